"""REINFORCE, with or without a learned baseline (Williams 1992; lecture §6.2; Sutton & Barto §13.3-4).

Each iteration samples complete episodes with π_θ, computes Monte Carlo returns G_t and takes one
gradient step on

    L(θ) = −mean_t[ w_t · log π_θ(a_t|s_t) · (G_t − b(s_t)) ],   w_t = γ^t or 1 (``discount_weighting``)

with b ≡ 0 (plain REINFORCE) or b(s) = V_w(s), a critic regressed on G_t (``baseline=True``).
By the lecture's proof the baseline leaves E[∇L] unchanged and lowers its variance; the tabular
``policylab.planning.exact_policy_gradient`` is the quantity this estimator is unbiased for (checked
in tests/test_policy_gradient_estimator.py; re-exported here).

Time limits: a truncated episode's return bootstraps from V_w(final obs) when a baseline critic
exists; without one it is cut (G ends at the time limit), which is the classical Monte Carlo return.
With n_envs > 1, an update uses only episodes that started and ended inside the iteration (the
steps of an episode already running when it starts are discarded); with n_envs = 1 nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from policylab.deep.agent import Agent
from policylab.deep.config import AgentOptions, check_fields
from policylab.losses import approx_kl, explained_variance, reinforce_loss, value_loss
from policylab.planning.policy_gradient import exact_policy_gradient
from policylab.planning.policy_gradient import softmax_policy as softmax
from policylab.returns import discounted_returns

__all__ = ["REINFORCE", "REINFORCEConfig", "exact_policy_gradient", "softmax"]


@dataclass
class REINFORCEConfig(AgentOptions):
    """REINFORCE hyperparameters. Williams (1992) gives no deep-RL defaults; these are CartPole-sized."""

    n_envs: int = 1                        # parallel envs (episodes collected side by side)
    batch_episodes: int = 1                # complete episodes per gradient step (Williams: 1)
    learning_rate: float = 1e-3            # actor Adam step size α_θ
    gamma: float = 0.99                    # discount γ
    baseline: bool = False                 # learn V_w(s) and use b(s) = V_w(s) (REINFORCE with baseline)
    baseline_learning_rate: float = 1e-3   # critic Adam step size α_w
    discount_weighting: bool = False       # weight step t by γ^t (unbiased for J = E[G_0], S&B §13.3)
    max_grad_norm: float | None = None     # global gradient-norm clip (None: off, as in the paper)
    hidden_sizes: tuple[int, ...] = (64, 64)  # MLP widths of actor and critic
    activation: str = "tanh"               # hidden activation: tanh | relu | elu
    log_std_init: float = 0.0              # initial log σ of the Gaussian head (continuous actions)

    def validate(self) -> None:
        check_fields(self, at_least_one=("n_envs", "batch_episodes"), unit=("gamma",),
                     positive=("learning_rate", "baseline_learning_rate"),
                     positive_or_none=("max_grad_norm",), widths=("hidden_sizes",))


class REINFORCE(Agent):
    """``REINFORCE(env, seed=0, baseline=True, **hyperparameters)``; see :class:`REINFORCEConfig`."""

    algo = "reinforce"
    config_class = REINFORCEConfig

    @property
    def uses_critic(self) -> bool:  # the critic is the learned baseline
        return self.config.baseline

    def setup(self) -> None:
        c = self.config
        self.optimizers["actor"] = torch.optim.Adam(self.net.actor_parameters(), lr=c.learning_rate)
        if c.baseline:
            self.optimizers["critic"] = torch.optim.Adam(self.net.critic.parameters(), lr=c.baseline_learning_rate)

    @torch.inference_mode()
    def _collect_episodes(self):
        """Step all envs until ``batch_episodes`` episodes that started in this call have ended.
        Returns (T, N[, ...]) arrays and the mask of steps that belong to such episodes."""
        c, net, head, N = self.config, self.net, self.head, self.n_envs
        fresh = self._ep_length == 0  # (N,) env's current episode starts now
        obs, rows, finished = self._obs, [], 0
        while finished < c.batch_episodes:
            params = net.policy_params(torch.from_numpy(obs))
            a = head.sample(params, self.torch_rng)  # (N,) or (N, d)
            logp = head.log_prob(params, a).numpy()
            a = a.numpy()
            next_obs, r, term, trunc, s_next = self.step_env(a)
            boot = np.zeros(N, dtype=np.float32)  # V(final obs) of truncated episodes
            if c.baseline and trunc.any():
                idx = np.flatnonzero(trunc)
                boot[idx] = net.value(torch.from_numpy(s_next[idx])).numpy()
            done = term | trunc
            rows.append((obs, a, logp, r, term, trunc, boot, fresh.copy()))
            finished += int((done & fresh).sum())
            fresh |= done
            obs = next_obs
        self._obs = obs
        self.num_steps += len(rows) * N
        obs_t, act, logp, rew, term, trunc, boot, use = (np.stack(x) for x in zip(*rows))  # (T, N, ...)
        done = term | trunc
        ends_later = np.flip(np.logical_or.accumulate(np.flip(done, 0), 0), 0)  # (T, N) an end at or after t
        return obs_t, act, logp, rew, term, trunc, boot, use & ends_later

    def _train_iteration(self, total_steps: int) -> dict:
        c, net, head = self.config, self.net, self.head

        # ---- rollout: complete episodes under π_θ --------------------------------------------------
        obs, act, old_logp, rew, term, trunc, boot, valid = self._collect_episodes()  # (T, N, ...)

        # ---- returns: G_t = r_{t+1} + γ G_{t+1}, and the weights γ^t -------------------------------
        G = discounted_returns(rew.astype(np.float64), c.gamma, boot.astype(np.float64),
                               terminated=term, truncated=trunc)  # (T, N)
        w = np.ones_like(G)
        if c.discount_weighting:  # γ^(step index inside its episode)
            k = np.zeros_like(G)
            for t in range(1, G.shape[0]):
                k[t] = np.where(term[t - 1] | trunc[t - 1], 0.0, k[t - 1] + 1.0)
            w = c.gamma ** k
        obs_v = torch.from_numpy(obs[valid])  # (M, obs_dim)
        act_v = torch.from_numpy(act[valid])  # (M,) or (M, d)
        G_v = torch.from_numpy(G[valid]).float()  # (M,)
        w_v = torch.from_numpy(w[valid]).float()  # (M,)

        # ---- update: critic (baseline) regression, then the policy-gradient step -------------------
        logs = {}
        b = None
        if c.baseline:
            values = net.value(obs_v)  # (M,)
            v_loss = value_loss(values, G_v)
            self._step("critic", v_loss, net.critic.parameters())
            b = values.detach()
            logs["losses/value_loss"] = v_loss.item()
            logs["losses/explained_variance"] = explained_variance(b.numpy(), G[valid])
        logp, entropy = head.log_prob_entropy(net.policy_params(obs_v), act_v)  # (M,)
        pg_loss = reinforce_loss(logp, w_v * G_v, None if b is None else w_v * b)
        self._step("actor", pg_loss, net.actor_parameters())

        # ---- logging ---------------------------------------------------------------------------------
        with torch.no_grad():
            new_logp = head.log_prob(net.policy_params(obs_v), act_v)
        logs.update({
            "losses/policy_loss": pg_loss.item(), "losses/entropy": entropy.mean().item(),
            "losses/approx_kl": approx_kl(new_logp, torch.from_numpy(old_logp[valid])).item(),
            "charts/learning_rate": c.learning_rate, "charts/batch_steps": int(valid.sum()),
        })
        return logs

    def _step(self, name: str, loss: torch.Tensor, params) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(params), self.config.max_grad_norm)
        opt.step()
