"""Advantage actor-critic, synchronous (A2C; Mnih et al. 2016, the synchronous variant of A3C).

Each iteration: N envs step T times (n-step, T = 5 by default) under π_θ, then ONE gradient
step on the whole (T, N) batch:

    Â_t = GAE(γ, λ)  (λ = 1: the n-step advantage Σ_{k<n} γ^k r_{t+k+1} + γ^n V(s_{t+n}) − V(s_t))
    L(θ, w) = −mean[log π_θ(a_t|s_t) Â_t] + c_v · ½ mean[(V_w(s_t) − R_t)²] − c_H · mean[H(π_θ(·|s_t))]

(``value_loss`` carries the ½, so c_v = 1 here is Baselines'/SB3's vf_coef = 0.5 on the plain MSE.)

The policy term is REINFORCE's with G_t − b(s_t) replaced by the bootstrapped advantage (lecture
§6.3), so it reuses ``reinforce_loss``. RMSprop (α = 0.99, ε = 1e-5) as in OpenAI Baselines/SB3.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from policylab.deep.agent import Agent
from policylab.deep.config import AgentOptions, check, check_fields
from policylab.deep.networks import flatten_parameters
from policylab.losses import (
    approx_kl,
    clip_fraction,
    entropy_bonus,
    explained_variance,
    reinforce_loss,
    value_loss,
)
from policylab.returns import gae

__all__ = ["A2C", "A2CConfig"]


@dataclass
class A2CConfig(AgentOptions):
    """A2C hyperparameters; defaults from Mnih et al. 2016 / OpenAI Baselines (16 envs, t_max = 5)."""

    n_envs: int = 16                       # parallel environments N (A3C's 16 actor-learners)
    n_steps: int = 5                       # n-step rollout length T per env
    learning_rate: float = 7e-4            # RMSprop step size α
    anneal_lr: bool = False                # linearly decay α to 0 over learn(total_steps)
    optimizer: str = "rmsprop"             # rmsprop (α = 0.99, ε = rms_eps) | adam
    rms_eps: float = 1e-5                  # RMSprop / Adam ε
    gamma: float = 0.99                    # discount γ
    gae_lambda: float = 1.0                # λ = 1: plain n-step returns; < 1: GAE
    normalize_advantage: bool = False      # standardize Â over the batch
    ent_coef: float = 0.01                 # entropy bonus c_H (A3C: 0.01)
    vf_coef: float = 1.0                   # weight c_v of ½·mean(V−R)² (= Baselines/SB3's 0.5 on MSE)
    max_grad_norm: float = 0.5             # global gradient-norm clip
    hidden_sizes: tuple[int, ...] = (64, 64)  # MLP widths of actor and critic (separate)
    activation: str = "tanh"               # hidden activation: tanh | relu | elu
    log_std_init: float = 0.0              # initial log σ of the Gaussian head (continuous)

    def validate(self) -> None:
        check_fields(self, at_least_one=("n_envs", "n_steps"),
                     positive=("learning_rate", "rms_eps", "max_grad_norm"), unit=("gamma", "gae_lambda"),
                     nonnegative=("ent_coef", "vf_coef"), widths=("hidden_sizes",))
        check(self.optimizer in ("rmsprop", "adam"), "optimizer", self.optimizer, "'rmsprop' or 'adam'")


class A2C(Agent):
    """``A2C(env, seed=0, **hyperparameters)``; see :class:`A2CConfig` and :class:`Agent`."""

    algo = "a2c"
    config_class = A2CConfig
    supports_shared_trunk = True

    def setup(self) -> None:
        c = self.config
        self.flat_params = flatten_parameters(self.net)  # one buffer: optimizer and grad clipping in one kernel
        if c.optimizer == "rmsprop":
            opt = torch.optim.RMSprop([self.flat_params], lr=c.learning_rate, alpha=0.99, eps=c.rms_eps)
        else:
            opt = torch.optim.Adam([self.flat_params], lr=c.learning_rate, eps=c.rms_eps, fused=True)
        self.optimizers["main"] = opt

    def update(self) -> dict:  # after collect(): a rollout of n steps of N envs under π_θ in self.storage
        c, net, head, opt, buf = self.config, self.net, self.head, self.optimizers["main"], self.storage
        lr = c.learning_rate * (max(self.progress_remaining, 0.0) if c.anneal_lr else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr

        # ---- advantages: n-step (λ = 1) or GAE; critic target R_t = Â_t + V(s_t) ----------------
        adv = gae(buf.rewards, c.gamma, buf.values, buf.next_values, c.gae_lambda,
                  terminated=buf.terminated, truncated=buf.truncated)  # (T, N)
        returns = adv + buf.values  # (T, N)

        obs = torch.from_numpy(buf.flat("obs"))  # (B, obs_dim), B = T·N
        actions = torch.from_numpy(buf.flat("actions"))  # (B,) or (B, d)
        old_logp = torch.from_numpy(buf.flat("logp"))  # (B,)
        adv_t = torch.from_numpy(adv.reshape(-1))  # (B,)
        if c.normalize_advantage and adv_t.numel() > 1:
            adv_t = (adv_t - adv_t.mean()) / (adv_t.std() + 1e-8)

        # ---- update: one gradient step on the whole batch ----------------------------------------
        logp, entropy = head.log_prob_entropy(net.policy_params(obs), actions)  # (B,)
        values = net.value(obs)  # (B,)
        pg_loss = reinforce_loss(logp, adv_t)
        v_loss = value_loss(values, torch.from_numpy(returns.reshape(-1)))
        loss = pg_loss + c.vf_coef * v_loss + c.ent_coef * entropy_bonus(entropy)
        self.flat_params.grad.zero_()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([self.flat_params], c.max_grad_norm)
        opt.step()

        # ---- logging: how far the step moved the policy (KL, ratio outside [0.8, 1.2]) -------------
        with torch.no_grad():
            new_logp = head.log_prob(net.policy_params(obs), actions)
            kl, cf = approx_kl(new_logp, old_logp).item(), clip_fraction(new_logp, old_logp, 0.2).item()
        return {
            "losses/policy_loss": pg_loss.item(), "losses/value_loss": v_loss.item(),
            "losses/entropy": entropy.mean().item(), "losses/approx_kl": kl, "losses/clip_fraction": cf,
            "losses/explained_variance": explained_variance(buf.values, returns),
            "charts/learning_rate": lr,
        }
