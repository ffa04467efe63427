"""Proximal Policy Optimization with the clipped surrogate (Schulman et al. 2017; lecture §7.1).

Each iteration: collect T steps from N envs with π_θold, compute GAE advantages, then K epochs
of minibatch SGD on

    L(θ, w) = −mean[min(ρ_t Â_t, clip(ρ_t, 1−ε, 1+ε) Â_t)] + c_v · L_V(w) − c_H · mean[H(π_θ(·|s_t))]

with ρ_t = π_θ(a_t|s_t) / π_θold(a_t|s_t) and L_V = ½ mean[(V_w(s_t) − R_t)²] (``value_loss``; its ½
makes c_v = 1 equal SB3's vf_coef = 0.5 on the plain MSE). Implementation details follow
SB3/CleanRL (Huang et al. 2022): per-minibatch advantage normalization, global gradient-norm
clipping, optional value clipping, linear learning-rate and clip-range annealing, early stop when
approx-KL exceeds 1.5 · target_kl. Discrete (categorical) and continuous (diagonal Gaussian) actions.

Two backends compute the same gradient of the same L (``tests/test_analytic_grads.py`` checks they
agree to float32 rounding):

- ``backend="torch"``: autograd through ``PolicyValueNet`` (``_torch_backward``).
- ``backend="numpy"``: the chain rule by hand (``_numpy_backward``): ∂L/∂log π and ∂L/∂V from
  ``policylab.losses.grads``, through the head's ``np_backward`` and the numpy mirror of the two
  MLPs (``policylab.deep.analytic``), written into the same flat gradient buffer; Adam in one
  compiled pass over torch's own optimizer state. On CartPole-sized nets torch's per-op overhead
  dominates the update, and this path is ~3–4× faster per env step. Checkpoints have the same
  layout either way (weights, Adam moments); the rollout and ``act``/``evaluate`` use the mirror's
  forward (same weights) with this backend.

The numpy backend mirrors two separate MLPs; with ``shared_trunk=True`` the agent runs the torch
backend instead (``self.backend``), the same loss and the same gradient.

The loss *values* that are logged always come from the torch functions in ``policylab.losses``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from policylab.deep.analytic import NumpyPolicyValueNet, adam_step, clip_grad_norm
from policylab.deep.common import Agent, explained_variance
from policylab.deep.config import AgentOptions, check, check_fields
from policylab.deep.networks import flatten_parameters
from policylab.losses import approx_kl, clip_fraction, entropy_bonus, ppo_clip_loss, value_loss
from policylab.losses.grads import ppo_clip_loss_grad, value_loss_grad
from policylab.returns import gae

__all__ = ["PPO", "PPOConfig"]


@dataclass
class PPOConfig(AgentOptions):
    """PPO hyperparameters; defaults are the paper's MuJoCo settings (Schulman et al. 2017, Table 3)."""

    n_envs: int = 1                        # parallel environments N
    n_steps: int = 2048                    # rollout length T per env (batch = N·T)
    batch_size: int = 64                   # minibatch size
    n_epochs: int = 10                     # SGD epochs K over each rollout
    learning_rate: float = 3e-4            # Adam step size α
    anneal_lr: bool = False                # linearly decay α to 0 over learn(total_steps)
    adam_eps: float = 1e-5                 # Adam ε (1e-5 as in the PPO baselines, not torch's 1e-8)
    gamma: float = 0.99                    # discount γ
    gae_lambda: float = 0.95               # GAE λ
    clip_range: float = 0.2                # surrogate clip ε
    anneal_clip: bool = False              # linearly decay ε to 0 over learn(total_steps)
    clip_range_vf: float | None = None     # value clip around old V (None: unclipped)
    normalize_advantage: bool = True       # standardize Â per minibatch
    ent_coef: float = 0.0                  # entropy bonus c_H
    vf_coef: float = 1.0                   # weight c_v of ½·mean(V−R)² (= SB3's 0.5 on mean(V−R)²)
    max_grad_norm: float = 0.5             # global gradient-norm clip
    target_kl: float | None = None         # stop the epochs once approx-KL > 1.5·target_kl
    hidden_sizes: tuple[int, ...] = (64, 64)  # MLP widths of actor and critic (separate)
    activation: str = "tanh"               # hidden activation: tanh | relu | elu
    log_std_init: float = 0.0              # initial log σ of the Gaussian head (continuous)
    backend: str = "numpy"                 # "numpy": analytic gradient (fast on CPU) | "torch": autograd

    def validate(self) -> None:
        check_fields(self, at_least_one=("n_envs", "n_steps", "batch_size", "n_epochs"),
                     positive=("learning_rate", "clip_range", "adam_eps", "max_grad_norm"),
                     unit=("gamma", "gae_lambda"), nonnegative=("ent_coef", "vf_coef"),
                     positive_or_none=("clip_range_vf", "target_kl"), widths=("hidden_sizes",))
        check(self.batch_size <= self.n_envs * self.n_steps, "batch_size", self.batch_size,
              f"≤ n_envs·n_steps = {self.n_envs * self.n_steps}")
        check(self.backend in ("torch", "numpy"), "backend", self.backend, "'torch' or 'numpy'")


class PPO(Agent):
    """``PPO(env, seed=0, **hyperparameters)``; see :class:`PPOConfig` and :class:`Agent`."""

    algo = "ppo"
    config_class = PPOConfig
    supports_shared_trunk = True
    legacy_config: ClassVar[dict] = {"backend": "torch"}  # checkpoints from before the numpy backend resume as trained

    def setup(self) -> None:
        c = self.config
        self.flat_params = flatten_parameters(self.net)  # one buffer: Adam, grad clipping = 1 kernel each
        self.optimizers["main"] = torch.optim.Adam([self.flat_params], lr=c.learning_rate, eps=c.adam_eps,
                                                   fused=True)
        self.flat_grad = self.flat_params.grad.numpy()  # numpy view of the flat gradient
        self.backend = "torch" if c.shared_trunk else c.backend  # numpy mirror: separate MLPs only
        if self.backend == "numpy":
            self.np_net = NumpyPolicyValueNet(self.net, c.activation)  # views of the same weights
        self.buf = self.allocate_rollout(c.n_steps)

    def _train_iteration(self, total_steps: int) -> dict:
        c, opt, buf = self.config, self.optimizers["main"], self.buf
        grad = self.flat_params.grad
        if grad is None or grad.data_ptr() != self.flat_grad.ctypes.data or (
                self.np_net is not None and not self.np_net.shares_memory_with(self.net)):
            raise RuntimeError("PPO's parameter/gradient buffers were replaced (e.g. by optimizer.zero_grad("
                               "set_to_none=True) or load_state_dict(assign=True)); rebuild the agent or use PPO.load")
        frac = max(1.0 - self.num_steps / total_steps, 1e-8)  # linear schedules: 1 → 0
        lr = c.learning_rate * (frac if c.anneal_lr else 1.0)
        clip_eps = c.clip_range * (frac if c.anneal_clip else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr

        # ---- rollout: T steps of N envs under π_θold ------------------------------------------
        self.collect_rollout(buf)

        # ---- advantages: GAE(γ, λ); critic target R_t = Â_t + V(s_t) ----------------------------
        adv = gae(buf.rewards, c.gamma, buf.values, buf.next_values, c.gae_lambda,
                  terminated=buf.terminated, truncated=buf.truncated)  # (T, N) float32
        returns = adv + buf.values  # (T, N)

        obs, actions = buf.flat("obs"), buf.flat("actions")  # (B, obs_dim), (B,) or (B, d); B = T·N
        old_logp, old_values = buf.flat("logp"), buf.flat("values")  # (B,), (B,)
        adv, returns_flat = adv.reshape(-1), returns.reshape(-1)  # (B,), (B,)

        # ---- update: K epochs of minibatch SGD on the clipped surrogate -------------------------
        n = obs.shape[0]
        full_batch = c.batch_size >= n  # one minibatch per epoch: no shuffle (a mean ignores order)
        if self.backend == "numpy":
            backward, step = self._numpy_backward, lambda: adam_step(opt, self.flat_params)
        else:
            backward, step = self._torch_backward, opt.step
        stats: list[torch.Tensor] = []
        stop = False
        for _epoch in range(c.n_epochs):
            order = None if full_batch else self.np_rng.permutation(n)
            for start in range(0, n, c.batch_size):
                mb = slice(None) if full_batch else order[start:start + c.batch_size]
                a = adv[mb]  # (b,)
                if c.normalize_advantage and a.size > 1:  # (Â − mean) / (std + 1e-8), std with n − 1
                    a = a - a.mean()
                    a /= np.sqrt(np.dot(a, a) / (a.size - 1)) + 1e-8
                batch = (obs[mb], actions[mb], old_logp[mb], a, returns_flat[mb], old_values[mb])
                logp, entropy, values = backward(batch, clip_eps)  # fills self.flat_params.grad
                clip_grad_norm(self.flat_grad, c.max_grad_norm)
                step()
                if c.target_kl is not None or _epoch == c.n_epochs - 1:  # diagnostics: last epoch
                    stats.append(self._diagnostics(batch, logp, entropy, values, clip_eps))
                    if c.target_kl is not None and stats[-1][3].item() > 1.5 * c.target_kl:
                        stop = True
                        break
            if stop:
                break

        # ---- logging ------------------------------------------------------------------------------
        pg, vl, ent, kl, cf = torch.stack(stats).mean(0).tolist()
        return {
            "losses/policy_loss": pg, "losses/value_loss": vl, "losses/entropy": ent,
            "losses/approx_kl": kl, "losses/clip_fraction": cf,
            "losses/explained_variance": explained_variance(buf.values, returns),
            "charts/learning_rate": lr, "charts/clip_range": clip_eps, "charts/epochs": _epoch + 1,
        }

    def _loss_terms(self, batch, logp, entropy, values, clip_eps):
        """The PPO loss terms on a minibatch: (L_clip, L_V, L_H), torch scalars."""
        c = self.config
        _, _, old_logp, adv, ret, old_values = batch
        pg_loss = ppo_clip_loss(logp, torch.from_numpy(old_logp), torch.from_numpy(adv), clip_eps)
        v_loss = value_loss(values, torch.from_numpy(ret),
                            torch.from_numpy(old_values) if c.clip_range_vf else None, c.clip_range_vf)
        return pg_loss, v_loss, entropy_bonus(entropy)

    def _torch_backward(self, batch, clip_eps):
        """L = L_clip + c_v·L_V + c_H·L_H on a minibatch, differentiated by autograd into the flat grad."""
        c = self.config
        obs, actions = torch.from_numpy(batch[0]), torch.from_numpy(batch[1])
        logp, entropy = self.head.log_prob_entropy(self.net.policy_params(obs), actions)  # (b,), (b,)
        values = self.net.value(obs)  # (b,)
        pg_loss, v_loss, ent_loss = self._loss_terms(batch, logp, entropy, values, clip_eps)
        loss = pg_loss + c.vf_coef * v_loss + (c.ent_coef * ent_loss if c.ent_coef > 0 else 0.0)
        self.flat_params.grad.zero_()
        loss.backward()
        return logp.detach(), entropy.detach(), values.detach()

    def _numpy_backward(self, batch, clip_eps):
        """The same L, differentiated by hand in numpy (policylab.deep.analytic): the chain rule from
        ∂L/∂log π, ∂L/∂V, ∂L/∂H (policylab.losses.grads) through the head and the two MLPs."""
        c, head, np_net = self.config, self.head, self.np_net
        obs, actions, old_logp, adv, ret, old_values = batch
        params, actor_cache = np_net.policy_params(obs)
        logp, entropy, head_cache = head.np_log_prob_entropy(params, actions)  # (b,), (b,)
        values, critic_cache = np_net.value(obs)  # (b,)
        g_logp = ppo_clip_loss_grad(logp, old_logp, adv, clip_eps)  # ∂L/∂log π(a|s)
        g_values = c.vf_coef * value_loss_grad(values, ret, old_values if c.clip_range_vf else None,
                                               c.clip_range_vf)  # ∂L/∂V
        g_entropy = -c.ent_coef / logp.size  # ∂L/∂H = c_H · ∂(−mean H)/∂H
        np_net.policy_backward(head.np_backward(head_cache, actions, g_logp, g_entropy), actor_cache)
        np_net.value_backward(g_values, critic_cache)
        return torch.from_numpy(logp), torch.from_numpy(entropy), torch.from_numpy(values)

    def _diagnostics(self, batch, logp, entropy, values, clip_eps) -> torch.Tensor:
        """[L_clip, L_V, mean H, approx-KL (k3), clip fraction] of the minibatch before its step."""
        pg_loss, v_loss, _ = self._loss_terms(batch, logp, entropy, values, clip_eps)
        old_logp = torch.from_numpy(batch[2])
        return torch.stack([pg_loss, v_loss, entropy.mean(), approx_kl(logp, old_logp),
                            clip_fraction(logp, old_logp, clip_eps)])
