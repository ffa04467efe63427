"""Soft actor-critic (Haarnoja et al. 2018a, 2018b): twin Q critics with target copies, a
tanh-squashed Gaussian policy, and automatic entropy temperature.

    from policylab.deep import SAC
    from policylab.deep.config import load_preset
    agent = SAC("Pendulum-v1", seed=0, config=load_preset("Pendulum-v1", "sac"))   # rl-zoo preset
    agent.learn(20_000); agent.evaluate(10).mean

One iteration of ``learn`` (the Agent hooks): ``collect`` steps every env ``train_freq`` times with
a ~ π(·|s) (uniform in the action box before ``learning_starts``) into the replay buffer; ``update``
does ``gradient_steps`` minibatch steps, each (in Stable-Baselines3's order)

    ã ∼ π_θ(·|s) reparameterized;  J(α) = −mean[log α · (log π(ã|s) + H̄)]        (temperature, H̄ = −|A|)
    y = r + γ(1 − terminated)(min_i Q_φ⁻ᵢ(s′, ã′) − α log π(ã′|s′)),  ã′ ∼ π_θ(·|s′)
    J_Q = ½ Σ_i mean (Q_φᵢ(s, a) − y)²                                          (critics)
    J_π = mean[α log π(ã|s) − min_i Q_φᵢ(s, ã)]                                 (actor)
    φ⁻ ← τφ + (1 − τ)φ⁻  every ``target_update_interval`` gradient steps

The policy is a = tanh(u), u ∼ N(μ_θ(s), σ_θ(s)²) (log σ clamped to [−20, 2]), mapped affinely onto
the action box; the critics see actions in [−1, 1]. Hyperparameter names and defaults are SB3's.

The step runs on a backend: ``backend="torch"`` is autograd (``TorchSACBackend``); ``"numpy"`` is the
chain rule by hand on numpy views of the same weights, gradients and Adam state, with ε from the
same torch Generator (``deep.fast.sac``, ~2× cheaper per step); ``"auto"`` (default) takes numpy for
plain float32 MLPs on the CPU and says in ``agent.notes`` why it did not otherwise.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from policylab.deep.agent import Agent
from policylab.deep.backend import BACKENDS, REPLACED, TorchBackend, choose_backend
from policylab.deep.config import AgentOptions, check, check_fields
from policylab.deep.fast.mlp import mlp_unsupported
from policylab.deep.fast.sac import NumpySACBackend
from policylab.deep.networks import flat_buffers_intact, flatten_parameters, mlp
from policylab.deep.replay import ReplayBuffer, replay_for
from policylab.errors import ConfigError, InputError
from policylab.losses.value_based import (
    polyak_update,
    sac_actor_loss,
    sac_critic_loss,
    sac_temperature_loss,
    soft_q_target,
    tanh_gaussian_log_prob,
)

__all__ = ["SAC", "SACConfig", "SACNetworks", "TanhGaussianHead", "TorchSACBackend"]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


@dataclass
class SACConfig(AgentOptions):
    RANGES: ClassVar[dict] = {"gradient_steps": "[-1, 2147483647]"}  # −1: as many as env steps collected

    learning_rate: float = 3e-4            # Adam step size (actor, critics, temperature)
    buffer_size: int = 1_000_000           # replay capacity, transitions over all envs
    learning_starts: int = 100             # env steps of uniform-random actions before the first update
    batch_size: int = 256                  # minibatch size
    tau: float = 0.005                     # target update φ⁻ ← τφ + (1 − τ)φ⁻
    gamma: float = 0.99                    # discount γ
    train_freq: int = 1                    # env steps per env between updates
    gradient_steps: int = 1                # minibatch steps per update; −1 = env steps collected
    ent_coef: object = "auto"              # α: a number, "auto" (learned, α₀ = 1) or "auto_<α₀>"
    target_update_interval: int = 1        # gradient steps between target updates
    target_entropy: object = "auto"        # H̄ for the learned α: "auto" = −dim(A), or a number
    n_critics: int = 2                     # Q critics (min over them: clipped double Q)
    n_envs: int = 1                        # parallel envs
    hidden_sizes: tuple[int, ...] = (256, 256)  # actor and critic widths
    activation: str = "relu"               # hidden activation
    save_replay_buffer: bool = False       # write the buffer with each checkpoint (exact resume)
    backend: str = "auto"                  # auto (numpy where it can, else torch) | numpy | torch (autograd)

    def validate(self) -> None:
        check(self.backend in BACKENDS, "backend", self.backend, f"one of {', '.join(map(repr, BACKENDS))}")
        check_fields(self, at_least_one=("buffer_size", "batch_size", "train_freq", "target_update_interval",
                                         "n_envs", "n_critics"),
                     positive=("learning_rate", "tau"), nonnegative=("learning_starts",),
                     unit=("gamma", "tau"), widths=("hidden_sizes",))
        check(self.gradient_steps >= 1 or self.gradient_steps == -1, "gradient_steps", self.gradient_steps, "≥ 1 or −1")
        check(self.learning_starts <= self.buffer_size, "learning_starts", self.learning_starts,
              f"≤ buffer_size={self.buffer_size} (the warm-up would overwrite itself)")
        check(self.buffer_size >= self.n_envs, "buffer_size", self.buffer_size, f"≥ n_envs={self.n_envs}")
        self.initial_alpha()
        if self.target_entropy != "auto":
            _number("target_entropy", self.target_entropy)

    def initial_alpha(self) -> tuple[float, bool]:
        """(α₀, learned?) from ``ent_coef``."""
        v = self.ent_coef
        if isinstance(v, str) and v.startswith("auto"):
            init = _number("ent_coef", v[5:]) if v.startswith("auto_") else 1.0
            check(init > 0, "ent_coef", v, "'auto', 'auto_<α₀ > 0>' or a number > 0")
            return init, True
        alpha = _number("ent_coef", v)
        check(alpha > 0, "ent_coef", v, "> 0")
        return alpha, False


def _number(name: str, v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"hyperparameter {name}={v!r} must be a number or 'auto'") from None
    if isinstance(v, bool) or not math.isfinite(x):
        raise ConfigError(f"hyperparameter {name}={v!r} must be a finite number")
    return x


class TanhGaussianHead:
    """a = low + (tanh(u) + 1)(high − low)/2, u ∼ N(μ, σ²); params = (μ (B, d), log σ (B, d)).
    ``mode`` is the squashed mean. (``Agent.act`` and ``evaluate`` call ``mode``/``sample``.)"""

    discrete = False

    def __init__(self, low: np.ndarray, high: np.ndarray):
        self.dim = self.param_dim = int(low.shape[0])
        self.action_shape = (self.dim,)
        self.low, self.scale = torch.from_numpy(low), torch.from_numpy((high - low) / 2.0)

    def squash(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + (torch.tanh(u) + 1.0) * self.scale  # (B, d) in the box

    def normalize(self, a: torch.Tensor) -> torch.Tensor:
        return (a - self.low) / self.scale - 1.0  # box → [−1, 1]

    def mode(self, params) -> torch.Tensor:
        return self.squash(params[0])

    def sample(self, params, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, log_std = params
        return self.squash(mean + log_std.exp() * torch.randn(mean.shape, generator=generator))

    def rsample(self, params, generator: torch.Generator | None = None):
        """(tanh(u) ∈ [−1, 1]^d, log π) with the graph through u = μ + σε (reparameterization)."""
        mean, log_std = params
        u = mean + log_std.exp() * torch.randn(mean.shape, generator=generator)
        return torch.tanh(u), tanh_gaussian_log_prob(mean, log_std, u)


class SACNetworks(nn.Module):
    """Actor μ_θ, log σ_θ; critics Q_φᵢ(s, a) on [obs, a ∈ [−1, 1]]; target critics; log α."""

    def __init__(self, obs_dim: int, act_dim: int, hidden, activation: str, n_critics: int, alpha0: float,
                 ortho_init: bool = True):
        super().__init__()
        self.actor = mlp(obs_dim, hidden, 2 * act_dim, activation, ortho_init=ortho_init)
        self.critics = nn.ModuleList(mlp(obs_dim + act_dim, hidden, 1, activation, ortho_init=ortho_init)
                                     for _ in range(n_critics))
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_ent_coef = nn.Parameter(torch.tensor(math.log(alpha0)))

    def policy_params(self, obs: torch.Tensor):
        mean, log_std = self.actor(obs).chunk(2, dim=-1)  # (B, d) each
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    @staticmethod
    def q(critics, obs: torch.Tensor, a: torch.Tensor) -> list[torch.Tensor]:
        x = torch.cat([obs, a], dim=-1)
        return [c(x).squeeze(-1) for c in critics]  # n_critics × (B,)


class SAC(Agent):
    """``SAC(env, seed=0, **hyperparameters)``; see :class:`SACConfig` and :class:`Agent`."""

    algo = "sac"
    config_class = SACConfig
    uses_critic = False

    # -- hooks ------------------------------------------------------------------------------------
    def build_net(self) -> SACNetworks:
        if self.head.discrete or self._low is None:
            raise InputError(f"SAC needs a bounded continuous (Box) action space; {self.env_id or 'this env'} "
                             f"has {self.env.single_action_space}")
        c = self.config
        self.head = TanhGaussianHead(self._low, self._high)
        alpha0, self.learn_alpha = c.initial_alpha()
        self.target_entropy = -float(self.head.dim) if c.target_entropy == "auto" else float(c.target_entropy)
        return SACNetworks(self.obs_dim, self.head.dim, c.hidden_sizes, c.activation, c.n_critics, alpha0,
                           c.ortho_init)

    def make_storage(self) -> ReplayBuffer:
        return replay_for(self)

    def setup(self) -> None:
        lr, net = self.config.learning_rate, self.net
        # one buffer per network: Adam, zeroing and the Polyak update are one kernel each (~20 % of a step)
        self.flat = {k: flatten_parameters(getattr(net, k)) for k in ("actor", "critics", "critics_target")}
        self.flat["critics_target"].requires_grad_(False)
        self.optimizers["actor"] = torch.optim.Adam([self.flat["actor"]], lr=lr, fused=True)
        self.optimizers["critic"] = torch.optim.Adam([self.flat["critics"]], lr=lr, fused=True)
        if self.learn_alpha:
            self.optimizers["ent_coef"] = torch.optim.Adam([net.log_ent_coef], lr=lr)
        else:
            net.log_ent_coef.requires_grad_(False)
        c = self.config
        numpy, why = choose_backend(c.backend, mlp_unsupported(c.activation, net.actor, *net.critics), "MLP on CPU")
        kw = {"learn_alpha": self.learn_alpha, "target_entropy": self.target_entropy}
        if numpy:
            self.backend = NumpySACBackend(net, self.head, c.activation, self.flat, self.optimizers, self.torch_rng,
                                           log_std_bounds=(LOG_STD_MIN, LOG_STD_MAX), **kw)
        else:
            self.backend = TorchSACBackend(net, self.head, self.flat, self.optimizers, self.torch_rng, **kw)
        self.notes.append(f"SAC backend: {self.backend.name} ({why})")

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """a ∼ π_θ(·|s) (torch_rng); uniform in the box before ``learning_starts`` (np_rng)."""
        if self.num_steps < self.config.learning_starts:
            return self.np_rng.uniform(self._low, self._high, size=(len(obs), self.head.dim)).astype(np.float32)
        return self.backend.explore(obs)

    def collect(self) -> None:
        self.collect_transitions(self.storage, self.config.train_freq)

    def update(self) -> dict:
        c = self.config
        keys = ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/ent_coef", "losses/ent_coef_loss")
        self.__dict__.pop("_finite_sums", None)
        if self.num_steps <= c.learning_starts:
            return dict.fromkeys(keys)
        n = c.gradient_steps if c.gradient_steps > 0 else c.train_freq * self.n_envs
        self.backend.verify()
        rows = [self.gradient_step(i) for i in range(n)]  # n × 5
        if getattr(self.backend, "sums", None) is not None:  # numpy backend: sums of the buffers its last step wrote
            self._finite_sums = self.backend.sums
        metrics = {k: float(sum(col)) / n for k, col in zip(keys, zip(*rows))}  # means over the n steps
        if not self.learn_alpha:  # a fixed α has no temperature loss (NaN would trip the divergence guard)
            metrics["losses/ent_coef_loss"] = None
        return metrics

    def gradient_step(self, i: int) -> tuple:
        """One minibatch step on the backend, with φ⁻ ← τφ + (1 − τ)φ⁻ every ``target_update_interval``
        steps; returns (actor loss, critic loss, entropy estimate, α, temperature loss)."""
        c = self.config
        b = self.storage.sample(c.batch_size)
        tau = c.tau if i % c.target_update_interval == 0 else None
        return self.backend.gradient_step(b.obs, b.actions, b.rewards, b.next_obs, b.discounts, tau)


class TorchSACBackend(TorchBackend):
    """The SAC step through autograd; the interface of ``fast.sac.NumpySACBackend``."""

    def __init__(self, net, head, flat: dict, optimizers: dict, rng: torch.Generator, *, learn_alpha: bool,
                 target_entropy: float):
        super().__init__(net, head, rng)
        self.flat, self.optimizers, self.learn_alpha, self.target_entropy = flat, optimizers, learn_alpha, target_entropy
        self._grad_views = {k: flat[k].grad.numpy() for k in ("actor", "critics")}

    def explore(self, obs: np.ndarray) -> np.ndarray:
        return self.head.sample(self.policy_params(obs), self.rng).numpy()  # (N, d)

    def gradient_step(self, obs, actions, rewards, next_obs, discounts, tau: float | None = None) -> tuple:
        net, head, opt, flat = self.net, self.head, self.optimizers, self.flat
        obs, next_obs = torch.from_numpy(obs), torch.from_numpy(next_obs)  # (B, obs_dim)
        a = head.normalize(torch.from_numpy(actions))  # (B, d) in [−1, 1]
        a_pi, logp = head.rsample(net.policy_params(obs), self.rng)  # (B, d), (B,)
        alpha_loss = float("nan")
        if self.learn_alpha:  # temperature first, with α of this step taken before its update (as SB3)
            loss = sac_temperature_loss(net.log_ent_coef, logp, self.target_entropy)
            alpha = net.log_ent_coef.detach().exp()
            opt["ent_coef"].zero_grad()
            loss.backward()
            opt["ent_coef"].step()
            alpha_loss = loss.item()
        else:
            alpha = net.log_ent_coef.exp()
        with torch.no_grad():
            a_next, logp_next = head.rsample(net.policy_params(next_obs), self.rng)
            q_next = torch.stack(net.q(net.critics_target, next_obs, a_next)).min(dim=0).values  # (B,)
            y = soft_q_target(torch.from_numpy(rewards), torch.from_numpy(discounts), q_next, logp_next, alpha)
        critic_loss = sac_critic_loss(net.q(net.critics, obs, a), y)
        flat["critics"].grad.zero_()  # never zero_grad(): set_to_none would cut the views into the buffer
        critic_loss.backward()
        opt["critic"].step()
        net.critics.requires_grad_(False)  # the actor's backward needs ∂Q/∂a only, not the critics' weight grads
        q_pi = torch.stack(net.q(net.critics, obs, a_pi)).min(dim=0).values  # (B,) critics after their step
        actor_loss = sac_actor_loss(logp, q_pi, alpha)
        flat["actor"].grad.zero_()
        actor_loss.backward()
        net.critics.requires_grad_(True)
        opt["actor"].step()
        if tau is not None:
            polyak_update([flat["critics_target"]], [flat["critics"]], tau)
        return actor_loss.item(), critic_loss.item(), -logp.detach().mean().item(), float(alpha), alpha_loss

    def verify(self) -> None:
        if not all(flat_buffers_intact(self.flat[k], v) for k, v in self._grad_views.items()):
            raise RuntimeError(REPLACED)
