"""DQN (Mnih et al. 2015) with the double-DQN target (van Hasselt et al. 2016) and n-step returns.

    from policylab.deep import DQN
    from policylab.deep.config import load_preset
    agent = DQN("CartPole-v1", seed=0, config=load_preset("CartPole-v1", "dqn"))   # rl-zoo preset
    agent.learn(50_000); agent.evaluate(20).mean
    DQN("CartPole-v1").learn_offline({"obs": ..., "actions": ..., "rewards": ..., "next_obs": ...,
                                      "terminated": ...}, gradient_steps=20_000)   # CQL, no env steps

One iteration of ``learn`` (the Agent hooks): ``collect`` steps every env ``train_freq`` times with
ε-greedy actions (uniform random before ``learning_starts``) into the replay buffer; ``update``
applies the target-network updates due over those steps, then ``gradient_steps`` minibatch steps on

    y = r + γ^m (1 − terminated) · max_a′ Q_θ⁻(s′, a′)          (double_q: Q_θ⁻(s′, argmax Q_θ(s′, ·)))
    L = mean Huber(y − Q_θ(s, a))                                (loss="mse": mean (y − Q)²)
        + α · mean [log Σ_a exp Q_θ(s, a) − Q_θ(s, a)]            (cql_alpha = α > 0: CQL, for learn_offline)

with the gradient's global norm clipped to ``max_grad_norm``. Hyperparameter names and defaults
are Stable-Baselines3's (``target_update_interval`` counts env steps over all envs; τ = 1 is a hard
copy; ``gradient_steps=-1`` = as many as env steps collected).

The step runs on a backend: ``backend="torch"`` is autograd (``TorchQBackend``); ``"numpy"`` is the
chain rule by hand on numpy views of the same weights, gradients and Adam state
(``deep.fast.qlearning``, ~4× cheaper per step on CartPole's (256, 256) net); ``"auto"`` (default)
takes numpy for any plain float32 MLP on the CPU and says in ``agent.notes`` why it did not otherwise.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from policylab.deep.agent import Agent
from policylab.deep.backend import BACKENDS, TorchBackend, choose_backend
from policylab.deep.config import AgentOptions, check, check_fields
from policylab.deep.fast.mlp import mlp_unsupported
from policylab.deep.fast.qlearning import NumpyQBackend
from policylab.deep.networks import flatten_parameters, mlp
from policylab.deep.replay import ReplayBuffer, discrete_dataset, replay_for
from policylab.errors import InputError
from policylab.losses.value_based import (
    cql_regularizer,
    double_q_learning_target,
    dqn_loss,
    polyak_update,
    q_learning_target,
)

__all__ = ["DQN", "DQNConfig", "QNetworks", "TorchQBackend"]


@dataclass
class DQNConfig(AgentOptions):
    RANGES: ClassVar[dict] = {"gradient_steps": "[-1, 2147483647]",  # −1: as many as env steps collected
                              "cql_alpha": "[0, 1e6]"}

    learning_rate: float = 1e-4            # Adam step size
    buffer_size: int = 1_000_000           # replay capacity, transitions over all envs
    learning_starts: int = 100             # env steps of uniform-random actions before the first update
    batch_size: int = 32                   # minibatch size
    tau: float = 1.0                       # target update θ⁻ ← τθ + (1 − τ)θ⁻ (1 = copy)
    gamma: float = 0.99                    # discount γ
    train_freq: int = 4                    # env steps per env between updates
    gradient_steps: int = 1                # minibatch steps per update; −1 = env steps collected
    target_update_interval: int = 10_000   # env steps between target-network updates
    exploration_fraction: float = 0.1      # share of the run over which ε decays linearly
    exploration_initial_eps: float = 1.0   # ε at the start
    exploration_final_eps: float = 0.05    # ε after the decay
    max_grad_norm: float = 10.0            # global gradient-norm clip
    n_steps: int = 1                       # n-step returns (1 = one-step Q-learning)
    double_q: bool = False                 # double-DQN target (van Hasselt et al. 2016)
    loss: str = "huber"                    # TD loss: "huber" (Mnih et al.) or "mse"
    cql_alpha: float | None = None         # CQL weight α (Kumar et al. 2020); None: 0 in learn, 1 in learn_offline
    n_envs: int = 1                        # parallel envs
    hidden_sizes: tuple[int, ...] = (64, 64)  # Q-network widths
    activation: str = "relu"               # hidden activation
    save_replay_buffer: bool = False       # write the buffer with each checkpoint (exact resume)
    backend: str = "auto"                  # auto (numpy where it can, else torch) | numpy | torch (autograd)

    def validate(self) -> None:
        check(self.backend in BACKENDS, "backend", self.backend, f"one of {', '.join(map(repr, BACKENDS))}")
        check_fields(self, at_least_one=("buffer_size", "batch_size", "train_freq", "target_update_interval",
                                         "n_envs", "n_steps"),
                     positive=("learning_rate", "max_grad_norm", "tau"), nonnegative=("learning_starts",),
                     unit=("gamma", "exploration_fraction", "exploration_initial_eps", "exploration_final_eps", "tau"),
                     widths=("hidden_sizes",))
        check(self.gradient_steps >= 1 or self.gradient_steps == -1, "gradient_steps", self.gradient_steps, "≥ 1 or −1")
        check(self.learning_starts <= self.buffer_size, "learning_starts", self.learning_starts,
              f"≤ buffer_size={self.buffer_size} (the warm-up would overwrite itself)")
        check(self.buffer_size >= self.n_envs, "buffer_size", self.buffer_size, f"≥ n_envs={self.n_envs}")
        check(self.loss in ("huber", "mse"), "loss", self.loss, "'huber' or 'mse'")


class QNetworks(nn.Module):
    """Q_θ(s, ·) (``q``) and its target copy Q_θ⁻ (``q_target``), both saved in checkpoints.
    ``policy_params`` returns Q(s, ·) as the categorical head's logits, so the Agent's greedy ``act``
    (the head's mode) is argmax_a Q(s, a)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden, activation: str, ortho_init: bool = True):
        super().__init__()
        self.q = mlp(obs_dim, hidden, n_actions, activation, ortho_init=ortho_init)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)

    def policy_params(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(obs)  # (B, A)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(obs).max(dim=-1).values  # V(s) = max_a Q(s, a), (B,)


class TorchQBackend(TorchBackend):
    """Autograd through ``net.q``; the same interface as ``fast.qlearning.NumpyQBackend``."""

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net.q(torch.from_numpy(obs)).numpy()  # (B, A)

    def td_step(self, obs, actions, rewards, next_obs, discounts, *, double_q: bool, loss: str,
                max_grad_norm: float, cql_alpha: float = 0.0) -> tuple[float, float, float]:
        """One minibatch step on TD loss + ``cql_alpha``·CQL regularizer; returns (TD loss, mean
        Q_θ(s, a), regularizer (0 when α = 0)) before the step. Shapes as ``ReplaySample``."""
        net, next_obs = self.net, torch.from_numpy(next_obs)
        rewards, discounts = torch.from_numpy(rewards), torch.from_numpy(discounts)  # (B,)
        with torch.no_grad():
            q_next = net.q_target(next_obs)  # (B, A)
            if double_q:
                y = double_q_learning_target(rewards, discounts, q_next, net.q(next_obs))
            else:
                y = q_learning_target(rewards, discounts, q_next)
        q_all, actions = net.q(torch.from_numpy(obs)), torch.from_numpy(actions)  # (B, A), (B,)
        q_sa = q_all.gather(1, actions.long().unsqueeze(1)).squeeze(1)
        td = dqn_loss(q_sa, y, loss)
        reg = cql_regularizer(q_all, actions) if cql_alpha else torch.zeros(())
        self.flat_params.grad.zero_()
        (td + cql_alpha * reg).backward()
        self.step(max_grad_norm)  # clip + Adam
        return td.item(), q_sa.detach().mean().item(), reg.item()


def linear_epsilon(c: DQNConfig, progress_remaining: float) -> float:
    """ε = ε₀ + (ε₁ − ε₀) · min(1, (1 − progress) / exploration_fraction)  (SB3's linear schedule)."""
    done = 1.0 - progress_remaining
    frac = 1.0 if c.exploration_fraction == 0 else min(1.0, done / c.exploration_fraction)
    return c.exploration_initial_eps + frac * (c.exploration_final_eps - c.exploration_initial_eps)


class DQN(Agent):
    """``DQN(env, seed=0, **hyperparameters)``; see :class:`DQNConfig` and :class:`Agent`."""

    algo = "dqn"
    config_class = DQNConfig
    discrete_only = True
    uses_critic = False

    # -- hooks ------------------------------------------------------------------------------------
    def build_net(self) -> QNetworks:
        c = self.config
        return QNetworks(self.obs_dim, self.head.n, c.hidden_sizes, c.activation, c.ortho_init)

    def make_storage(self) -> ReplayBuffer:
        return replay_for(self, self.config.n_steps)

    def setup(self) -> None:
        c, net = self.config, self.net
        # one buffer each: Adam, clipping and the target update are one kernel; the numpy mirror views them
        self.flat_params, self.flat_target = flatten_parameters(net.q), flatten_parameters(net.q_target)
        self.optimizers["q"] = torch.optim.Adam([self.flat_params], lr=c.learning_rate, fused=True)
        numpy, why = choose_backend(c.backend, mlp_unsupported(c.activation, net.q), "MLP on CPU")
        if numpy:
            self.backend = NumpyQBackend(net, c.activation, self.flat_params, self.optimizers["q"])
        else:
            self.backend = TorchQBackend(net, self.head, self.torch_rng, self.flat_params, self.optimizers["q"])
        self.notes.append(f"DQN backend: {self.backend.name} ({why})")
        self.exploration_rate = c.exploration_initial_eps

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """ε-greedy on Q_θ (uniform random actions before ``learning_starts``), drawn from ``np_rng``."""
        n = len(obs)
        random = self.np_rng.integers(0, self.head.n, size=n)
        if self.num_steps < self.config.learning_starts:
            return random
        greedy = self.backend.q_values(obs).argmax(axis=-1)
        return np.where(self.np_rng.random(n) < self.exploration_rate, random, greedy)

    def act(self, obs, deterministic: bool = True, generator: torch.Generator | None = None):
        """argmax_a Q(s, a); ``deterministic=False``: ε-greedy with the current ε (``exploration_rate``),
        as SB3's ``predict(deterministic=False)`` — each row independently, from ``generator``."""
        greedy = super().act(obs, True)
        if deterministic:
            return greedy
        g = generator or self.torch_rng
        shape = np.shape(greedy)
        random = torch.randint(self.head.n, shape, generator=g).numpy()
        explore = torch.rand(shape, generator=g).numpy() < self.exploration_rate
        return np.where(explore, random, greedy)[()]

    def collect(self) -> None:
        self.exploration_rate = linear_epsilon(self.config, self.progress_remaining)
        self.collect_transitions(self.storage, self.config.train_freq)

    def update(self) -> dict:
        c = self.config
        alpha = c.cql_alpha or 0.0
        metrics = {"losses/value_loss": None, "losses/q_values": None, "charts/exploration_rate": self.exploration_rate}
        metrics |= {"losses/cql_loss": None} if alpha else {}
        interval = max(c.target_update_interval // self.n_envs, 1)  # in vector steps, as SB3
        calls = self.num_steps // self.n_envs
        for _ in range(calls // interval - (calls - c.train_freq) // interval):  # target updates due
            polyak_update([self.flat_target], [self.flat_params], c.tau)
        if self.num_steps <= c.learning_starts:
            return metrics
        n = c.gradient_steps if c.gradient_steps > 0 else c.train_freq * self.n_envs
        return {**metrics, **self.gradient_steps(self.storage, n, alpha)}

    # -- the update ---------------------------------------------------------------------------------
    def gradient_steps(self, buf: ReplayBuffer, n: int, cql_alpha: float = 0.0) -> dict:
        """``n`` minibatch steps of the TD regression (+ α·CQL regularizer) on samples of ``buf``;
        mean TD loss, Q and (α > 0) regularizer."""
        c = self.config
        self.backend.verify()
        out = np.empty((n, 3))  # TD loss, mean Q(s, a), CQL regularizer
        for i in range(n):
            b = buf.sample(c.batch_size)
            out[i] = self.backend.td_step(b.obs, b.actions, b.rewards, b.next_obs, b.discounts, double_q=c.double_q,
                                          loss=c.loss, max_grad_norm=c.max_grad_norm, cql_alpha=cql_alpha)
        loss, q, reg = out.mean(axis=0).tolist()
        return {"losses/value_loss": loss, "losses/q_values": q} | ({"losses/cql_loss": reg} if cql_alpha else {})

    # -- learning from logged experience ------------------------------------------------------------
    def learn_offline(self, dataset, gradient_steps: int, *, target_update_every: int | None = None,
                      log_dir=None, tensorboard: bool = True, log_every: int = 1000, callback=None):
        """Fit Q_θ on a fixed dataset, no env interaction: ``gradient_steps`` minibatch steps of

            L = TD loss + α · mean_b [log Σ_a exp Q_θ(s_b, a) − Q_θ(s_b, a_b)]     (CQL(H), Kumar et al. 2020)

        α = ``cql_alpha`` (None → 1.0, d3rlpy's DiscreteCQL default; 0 is plain offline DQN, which
        on CartPole fits policies that balance the pole but drift off the track: actions the log
        rarely shows get over-estimated, the extrapolation error of Fujimoto et al. 2019).
        ``dataset``: a replay-buffer file (``ReplayBuffer.save``, a checkpoint's
        ``replay_buffer.safetensors``), a ``ReplayBuffer``, or a mapping of arrays obs (B, obs_dim),
        actions (B,), rewards (B,), next_obs (B, obs_dim), terminated (B,), optional truncated (B,),
        checked before any work (``replay.discrete_dataset``; targets use this agent's γ and n-step).
        The target net is updated every ``target_update_every`` gradient steps; by default at the
        online ratio, ⌈target_update_interval / (train_freq·n_envs)⌉ · gradient_steps per update.
        ``callback(agent, metrics)`` every ``log_every`` steps; returning False stops. Returns self.
        """
        for name, v in (("gradient_steps", gradient_steps), ("log_every", log_every)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{name} must be an int ≥ 1, got {v!r}")
        c = self.config
        per_round = c.gradient_steps if c.gradient_steps > 0 else c.train_freq * self.n_envs
        every = target_update_every or -(-c.target_update_interval // (c.train_freq * self.n_envs)) * per_round
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise InputError(f"target_update_every must be an int ≥ 1, got {target_update_every!r}")
        buf = discrete_dataset(self, dataset)
        alpha = 1.0 if c.cql_alpha is None else c.cql_alpha
        logger = None
        if log_dir is not None:
            from policylab.io.logger import RunLogger

            logger = RunLogger(log_dir, tensorboard=tensorboard)
        done, rows = 0, []
        try:
            while done < gradient_steps:
                n = min(gradient_steps - done, every - done % every, log_every - done % log_every)
                rows.append(self.gradient_steps(buf, n, alpha))
                done += n
                if done % every == 0:
                    polyak_update([self.flat_target], [self.flat_params], c.tau)
                if done % log_every == 0 or done == gradient_steps:
                    metrics = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
                    rows.clear()
                    if logger is not None:
                        logger.log(done, metrics)
                    if callback is not None and callback(self, metrics) is False:
                        break
        finally:
            if logger is not None:
                logger.close()
        return self
