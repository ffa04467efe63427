"""Proximal Policy Optimization with the clipped surrogate (Schulman et al. 2017; lecture §7.1).

Each iteration: collect T steps from N envs with π_θold, compute GAE advantages, then K epochs
of minibatch SGD on

    L(θ, w) = −mean[min(ρ_t Â_t, clip(ρ_t, 1−ε, 1+ε) Â_t)] + c_v · L_V(w) − c_H · mean[H(π_θ(·|s_t))]

with ρ_t = π_θ(a_t|s_t) / π_θold(a_t|s_t) and L_V = ½ mean[(V_w(s_t) − R_t)²] (``value_loss``; its ½
makes c_v = 1 equal SB3's vf_coef = 0.5 on the plain MSE). Implementation details follow
SB3/CleanRL (Huang et al. 2022): per-minibatch advantage normalization, global gradient-norm
clipping, optional value clipping, linear learning-rate and clip-range annealing, early stop when
approx-KL exceeds 1.5 · target_kl. Discrete (categorical) and continuous (diagonal Gaussian) actions.

The network computes through a backend (``policylab.deep.backend``): ``backend="torch"`` is autograd
through ``PolicyValueNet``; ``backend="numpy"`` is the chain rule by hand (``policylab.deep.fast``:
∂L/∂(log π, H, V) from ``losses.grads.ppo_loss_grad``, through the numpy heads and a numpy mirror of
the two MLPs, into the same flat gradient buffer; Adam in one compiled pass over torch's optimizer
state) — ~3–4× faster per env step on CartPole-sized nets, where torch's per-op overhead dominates.
``backend="auto"`` (default) takes numpy wherever it can compute this network and loss (MLP on CPU,
categorical or Gaussian head) and torch otherwise, and says which in ``agent.notes`` and the log.
Either way the loss that is logged is ``losses.ppo_loss`` — the very function that is differentiated
— and checkpoints have the same layout (weights, Adam moments).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import numpy as np
import torch

from policylab.deep.agent import Agent
from policylab.deep.backend import BACKENDS, make_backend
from policylab.deep.config import AgentOptions, check, check_fields
from policylab.deep.networks import flatten_parameters
from policylab.losses import approx_kl, clip_fraction, explained_variance, ppo_loss
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
    backend: str = "auto"                  # auto (numpy where it can, else torch) | numpy (hand-written
                                           # gradient, fast on CPU) | torch (autograd)

    def validate(self) -> None:
        check_fields(self, at_least_one=("n_envs", "n_steps", "batch_size", "n_epochs"),
                     positive=("learning_rate", "clip_range", "adam_eps", "max_grad_norm"),
                     unit=("gamma", "gae_lambda"), nonnegative=("ent_coef", "vf_coef"),
                     positive_or_none=("clip_range_vf", "target_kl"), widths=("hidden_sizes",))
        check(self.batch_size <= self.n_envs * self.n_steps, "batch_size", self.batch_size,
              f"≤ n_envs·n_steps = {self.n_envs * self.n_steps}")
        check(self.backend in BACKENDS, "backend", self.backend, f"one of {', '.join(map(repr, BACKENDS))}")


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
        # L = L_clip + c_v·L_V + c_H·L_H; the minibatch constants are bound in update()
        self.loss = partial(ppo_loss, vf_coef=c.vf_coef, ent_coef=c.ent_coef, clip_eps_vf=c.clip_range_vf)
        self.backend, why = make_backend(c.backend, self.net, self.head, c.activation, self.torch_rng, self.np_rng,
                                         self.flat_params, self.optimizers["main"], self.loss)
        self.notes.append(f"PPO backend: {self.backend.name} ({why})")

    def update(self) -> dict:
        c, opt, buf, backend = self.config, self.optimizers["main"], self.storage, self.backend
        backend.verify()
        frac = max(self.progress_remaining, 1e-8)  # linear schedules: 1 → 0 over learn(total_steps)
        lr = c.learning_rate * (frac if c.anneal_lr else 1.0)
        clip_eps = c.clip_range * (frac if c.anneal_clip else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr

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
        stats: list[list[float]] = []
        stop = False
        for _epoch in range(c.n_epochs):
            order = None if full_batch else self.np_rng.permutation(n)
            for start in range(0, n, c.batch_size):
                mb = slice(None) if full_batch else order[start:start + c.batch_size]
                a = adv[mb]  # (b,)
                if c.normalize_advantage and a.size > 1:  # (Â − mean) / (std + 1e-8), std with n − 1
                    a = a - a.mean()
                    a /= np.sqrt(np.dot(a, a) / (a.size - 1)) + 1e-8
                log = c.target_kl is not None or _epoch == c.n_epochs - 1  # diagnostics: last epoch
                terms, logp, entropy, _ = backend.loss_and_grad(
                    obs[mb], actions[mb], self.loss, terms=log, old_logp=old_logp[mb], advantages=a,
                    returns=returns_flat[mb], old_values=old_values[mb], clip_eps=clip_eps)
                backend.step(c.max_grad_norm)
                if log:  # the loss (and its terms) before this step, as differentiated
                    kl = float(approx_kl(logp, old_logp[mb]))
                    stats.append([float(terms.policy), float(terms.value), float(entropy.mean()), kl,
                                  float(clip_fraction(logp, old_logp[mb], clip_eps))])
                    if c.target_kl is not None and kl > 1.5 * c.target_kl:
                        stop = True
                        break
            if stop:
                break

        # ---- logging ------------------------------------------------------------------------------
        pg, vl, ent, kl, cf = np.mean(stats, axis=0).tolist()
        return {
            "losses/policy_loss": pg, "losses/value_loss": vl, "losses/entropy": ent,
            "losses/approx_kl": kl, "losses/clip_fraction": cf,
            "losses/explained_variance": explained_variance(buf.values, returns),
            "charts/learning_rate": lr, "charts/clip_range": clip_eps, "charts/epochs": _epoch + 1,
        }
