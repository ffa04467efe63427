"""Experience replay for off-policy methods (Lin 1992; Mnih et al. 2015): a circular buffer of
transitions, sampled uniformly, with optional n-step returns.

Layout: preallocated numpy arrays of shape (rows, N, ...) for N parallel envs, rows =
capacity // N, written one row (one vector-env step) at a time at ``pos``; when full, the oldest
row is overwritten. Each transition stores its TRUE next observation (Gymnasium's ``final_obs`` at
the end of an episode), ``terminated`` and ``truncated`` separately: a terminated transition does
not bootstrap, a truncated one does (from its final observation).

Memory: (2·obs_dim·4 + action bytes + 4 + 2) bytes per transition (float32 obs and next obs,
int64 discrete or float32 continuous actions, float32 reward, two bool flags). Per million
transitions: CartPole (obs 4, discrete) 46 MB; Pendulum (obs 3, 1-d action) 34 MB; Hopper
(obs 11, 3-d action) 106 MB. ``nbytes`` gives the exact figure.

A sample is a :class:`ReplaySample` of numpy arrays (B = batch size):
obs (B, obs_dim), actions (B,) or (B, d), rewards (B,) = n-step discounted reward sums,
next_obs (B, obs_dim) = s_{t+m}, discounts (B,) = γ^m·(1 − terminated), m ≤ n the number of steps
actually summed (an n-step window stops at an episode end and at the newest row), so the
regression target is always ``rewards + discounts · V(next_obs)``.

Sampling draws from the buffer's own ``numpy.random.Generator`` (seeded), whose state is saved
with the buffer: ``save(path)`` / ``ReplayBuffer.load(path)`` (safetensors + JSON metadata, no
pickle) restore it exactly, so a resumed run samples the same minibatches.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from policylab.errors import CheckpointError, DataError, InputError, MissingFileError
from policylab.returns import n_step_returns

__all__ = ["ReplayBuffer", "ReplaySample", "discrete_dataset"]

FORMAT = "policylab-replay-v1"
_ARRAYS = ("obs", "next_obs", "actions", "rewards", "terminated", "truncated")


@dataclass
class ReplaySample:
    obs: np.ndarray        # (B, obs_dim) s_t
    actions: np.ndarray    # (B,) int64 or (B, d) float32
    rewards: np.ndarray    # (B,) Σ_{k<m} γ^k r_{t+k+1}
    next_obs: np.ndarray   # (B, obs_dim) s_{t+m}
    discounts: np.ndarray  # (B,) γ^m (1 − terminated)


class ReplayBuffer:
    """Circular transition store for N envs; see the module docstring for layout and memory."""

    def __init__(self, capacity: int, obs_dim: int, action_shape: tuple = (), discrete: bool = True, *,
                 n_envs: int = 1, n_step: int = 1, gamma: float = 0.99, seed: int = 0):
        for name, v in (("capacity", capacity), ("obs_dim", obs_dim), ("n_envs", n_envs), ("n_step", n_step)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{name} must be an int ≥ 1, got {v!r}")
        if capacity < n_envs:
            raise InputError(f"capacity={capacity} must hold at least one row of n_envs={n_envs} transitions")
        if not 0.0 <= float(gamma) <= 1.0:
            raise InputError(f"gamma must be in [0, 1], got {gamma!r}")
        self.rows, self.n_envs = int(capacity) // int(n_envs), int(n_envs)
        self.obs_dim, self.action_shape, self.discrete = int(obs_dim), tuple(action_shape), bool(discrete)
        self.n_step, self.gamma, self.seed = int(n_step), float(gamma), int(seed)
        shape = (self.rows, self.n_envs)
        self.obs = np.zeros((*shape, self.obs_dim), np.float32)
        self.next_obs = np.zeros((*shape, self.obs_dim), np.float32)
        self.actions = np.zeros((*shape, *self.action_shape), np.int64 if discrete else np.float32)
        self.rewards = np.zeros(shape, np.float32)
        self.terminated = np.zeros(shape, bool)
        self.truncated = np.zeros(shape, bool)
        self.pos, self.full = 0, False
        self.rng = np.random.default_rng(self.seed)
        self.saved_extra: dict = {}  # what ``save(path, **extra)`` stored, after ``load``

    # ------------------------------------------------------------------ size
    @property
    def capacity(self) -> int:
        return self.rows * self.n_envs

    @property
    def size(self) -> int:
        """Rows (vector-env steps) currently stored."""
        return self.rows if self.full else self.pos

    def __len__(self) -> int:
        return self.size * self.n_envs

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, k).nbytes for k in _ARRAYS)

    # ------------------------------------------------------------------ writing
    def add(self, obs, actions, rewards, next_obs, terminated, truncated=False) -> None:
        """Store one step of every env: obs/next_obs (N, obs_dim), actions (N,) or (N, d),
        rewards/terminated/truncated (N,). ``next_obs`` must be the true next observation
        (``info["final_obs"]`` where an episode ended), not the reset observation."""
        p = self.pos
        self.obs[p] = obs
        self.next_obs[p] = next_obs
        self.actions[p] = actions
        self.rewards[p] = rewards
        self.terminated[p] = terminated
        self.truncated[p] = truncated
        self.pos = (p + 1) % self.rows
        self.full = self.full or self.pos == 0

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int) -> ReplaySample:
        """``batch_size`` transitions drawn uniformly (with replacement) from all stored ones."""
        if self.size == 0:
            raise InputError("cannot sample from an empty replay buffer")
        i = self.rng.integers(0, self.size, size=batch_size)      # (B,) rows
        e = self.rng.integers(0, self.n_envs, size=batch_size)    # (B,) envs
        return self.transitions(i, e)

    def transitions(self, i: np.ndarray, e: np.ndarray) -> ReplaySample:
        """The (n-step) transitions starting at rows ``i`` of envs ``e`` (both (B,))."""
        if self.n_step == 1:  # gathers by flat row (row, env) → row·N + env: one take per array, ~3× cheaper
            f = i * self.n_envs + e

            def rows(x):
                return x.reshape(-1, *x.shape[2:]).take(f, axis=0)

            disc = np.float32(self.gamma) * (1.0 - rows(self.terminated).astype(np.float32))
            return ReplaySample(rows(self.obs), rows(self.actions), rows(self.rewards), rows(self.next_obs), disc)
        n = self.n_step
        ks = np.arange(n)[:, None]                                 # (n, 1)
        j = (i[None, :] + ks) % self.rows                          # (n, B) window rows
        avail = (self.pos - i) % self.rows if self.full else self.pos - i
        avail = np.where(avail == 0, self.rows, avail)             # (B,) rows from i to the newest
        term = self.terminated[j, e]                               # (n, B)
        cut = self.truncated[j, e] | (ks == avail - 1)             # the newest row bootstraps like truncation
        r = n_step_returns(self.rewards[j, e].astype(np.float64), self.gamma, np.zeros(j.shape), n,
                           terminated=term, truncated=cut)[0]      # (B,) discounted reward sum
        stops = term | cut | (ks == n - 1)
        stop = stops.argmax(axis=0)                                # (B,) first k where the window ends
        last = j[stop, np.arange(len(i))]                          # (B,) row of s_{t+m−1}
        disc = self.gamma ** (stop + 1) * (1.0 - self.terminated[last, e])
        return ReplaySample(self.obs[i, e], self.actions[i, e], r.astype(np.float32),
                            self.next_obs[last, e], disc.astype(np.float32))

    # ------------------------------------------------------------------ offline data
    @classmethod
    def from_arrays(cls, obs, actions, rewards, next_obs, terminated, truncated=None, *,
                    n_actions: int | None = None, action_low=None, action_high=None, n_step: int = 1,
                    gamma: float = 0.99, seed: int = 0) -> ReplayBuffer:
        """A full buffer (one env column) holding a logged dataset of B transitions, checked
        before any work: equal lengths, finite numbers, actions in [0, n_actions) (discrete, int)
        or inside [low, high] (continuous). Rows must be in time order for n_step > 1."""
        obs = np.asarray(obs)
        B = len(obs)
        if B == 0:
            raise DataError("the dataset is empty")
        cols = {"obs": obs, "actions": np.asarray(actions), "rewards": np.asarray(rewards),
                "next_obs": np.asarray(next_obs), "terminated": np.asarray(terminated),
                "truncated": np.zeros(B, bool) if truncated is None else np.asarray(truncated)}
        for k, v in cols.items():
            if len(v) != B:
                raise DataError(f"dataset field {k!r} has {len(v)} rows but 'obs' has {B}")
            if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
                row = int(np.argwhere(~np.isfinite(v))[0][0])
                raise DataError(f"dataset field {k!r} row {row} is not finite")
        if obs.ndim != 2 or cols["next_obs"].shape != obs.shape:
            raise DataError(f"'obs' and 'next_obs' must both have shape (B, obs_dim), got "
                            f"{obs.shape} and {cols['next_obs'].shape}")
        a = cols["actions"]
        discrete = n_actions is not None
        if discrete:
            if a.ndim != 1 or (a.dtype.kind == "f" and np.any(a != np.round(a))) or a.dtype.kind not in "iuf":
                raise DataError(f"'actions' must be (B,) integers for a discrete action space, got {a.dtype} {a.shape}")
            bad = np.flatnonzero((a < 0) | (a >= n_actions))
            if bad.size:
                raise DataError(f"dataset row {bad[0]}: action {a[bad[0]]} is outside [0, {n_actions})")
        elif action_low is not None:
            a2 = a.reshape(B, -1)
            bad = np.flatnonzero(np.any((a2 < action_low) | (a2 > action_high), axis=1))
            if bad.size:
                raise DataError(f"dataset row {bad[0]}: action {a[bad[0]]} is outside the action box "
                                f"[{action_low}, {action_high}]")
        buf = cls(B, obs.shape[1], a.shape[1:], discrete, n_envs=1, n_step=n_step, gamma=gamma, seed=seed)
        for k, v in cols.items():
            getattr(buf, k)[:, 0] = v.astype(getattr(buf, k).dtype)
        buf.pos, buf.full = 0, True
        return buf

    # ------------------------------------------------------------------ save / load
    def _meta(self) -> dict:
        return {"format": FORMAT, "rows": self.rows, "n_envs": self.n_envs, "obs_dim": self.obs_dim,
                "action_shape": list(self.action_shape), "discrete": self.discrete, "n_step": self.n_step,
                "gamma": self.gamma, "seed": self.seed, "pos": self.pos, "full": self.full,
                "rng": self.rng.bit_generator.state}

    def save(self, path, **extra) -> Path:
        """Write the stored rows, position and sampling RNG state to ``path`` (a safetensors
        file with JSON metadata), atomically. ``extra`` (JSON-able) comes back as ``saved_extra``."""
        from safetensors.numpy import save

        from policylab.io.checkpoint import atomic_write_bytes

        path = Path(path)
        n = self.size
        data = {k: np.ascontiguousarray(getattr(self, k)[:n]) for k in _ARRAYS}
        meta = {k: json.dumps(v) for k, v in {**self._meta(), "extra": extra}.items()}
        atomic_write_bytes(path, save(data, metadata=meta))
        return path

    @classmethod
    def load(cls, path) -> ReplayBuffer:
        """Rebuild a buffer written by :meth:`save` (same contents, position and RNG state)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"replay buffer file {path} not found")
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
                data = {k: f.get_tensor(k) for k in _ARRAYS}
        except Exception as exc:  # noqa: BLE001 (any unreadable file is the user's bad input)
            raise CheckpointError(f"{path} is not a readable replay buffer: {exc}") from None
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a policylab replay buffer (format {meta.get('format')!r})")
        buf = cls(meta["rows"] * meta["n_envs"], meta["obs_dim"], tuple(meta["action_shape"]), meta["discrete"],
                  n_envs=meta["n_envs"], n_step=meta["n_step"], gamma=meta["gamma"], seed=meta["seed"])
        for k, v in data.items():
            getattr(buf, k)[: len(v)] = v
        buf.pos, buf.full = int(meta["pos"]), bool(meta["full"])
        buf.rng.bit_generator.state = meta["rng"]
        buf.saved_extra = meta.get("extra", {})
        return buf


# ---------------------------------------------------------------------- agent plumbing (DQN, SAC)
REPLAY_FILE = "replay_buffer.safetensors"


def replay_for(agent, n_step: int = 1) -> ReplayBuffer:
    """The replay buffer of an off-policy agent (``config.buffer_size``, γ, n-step; seeded by the
    agent's seed), shaped for its env's spaces."""
    c = agent.config
    return ReplayBuffer(c.buffer_size, agent.obs_dim, agent.head.action_shape, agent.head.discrete,
                        n_envs=agent.n_envs, n_step=n_step, gamma=c.gamma, seed=agent.seed)


def save_replay(agent, path) -> None:
    """Write ``agent.storage`` into checkpoint directory ``path`` when ``config.save_replay_buffer``,
    tagged with the step count so a buffer from another save is never paired with this one."""
    if getattr(agent.config, "save_replay_buffer", False):
        Path(path).mkdir(parents=True, exist_ok=True)
        agent.storage.save(Path(path) / REPLAY_FILE, num_steps=agent.num_steps)


def restore_replay(agent, path) -> None:
    """Load the buffer saved beside a checkpoint (if any) into ``agent.storage``."""
    f = Path(path) / REPLAY_FILE
    if not f.is_file():
        return
    buf = ReplayBuffer.load(f)
    if buf.saved_extra.get("num_steps") != agent.num_steps:
        raise CheckpointError(f"{f} was saved at step {buf.saved_extra.get('num_steps')} but the checkpoint "
                              f"is at step {agent.num_steps} (interrupted save?); delete {f.name} to resume "
                              "with an empty buffer")
    if (buf.rows, buf.n_envs, buf.obs_dim, buf.action_shape) != (agent.storage.rows, agent.storage.n_envs,
                                                                 agent.storage.obs_dim, agent.storage.action_shape):
        raise CheckpointError(f"{f} does not fit this agent's replay buffer (buffer_size, n_envs or spaces differ)")
    agent.storage = buf


def discrete_dataset(agent, dataset) -> ReplayBuffer:
    """A logged dataset for a discrete-action agent's offline fit (``DQN.learn_offline``), checked
    against its spaces before any work: a replay-buffer file, a ``ReplayBuffer``, or a mapping of
    arrays obs, actions, rewards, next_obs, terminated (optional truncated). Targets use the
    agent's γ and n-step, never the dataset's (a buffer is viewed, not changed)."""
    c, n_actions = agent.config, agent.head.n
    if isinstance(dataset, (str, Path)):
        dataset = ReplayBuffer.load(dataset)
    if isinstance(dataset, ReplayBuffer):
        if not dataset.discrete or dataset.obs_dim != agent.obs_dim:
            raise DataError(f"the replay buffer holds obs_dim={dataset.obs_dim}, "
                            f"{'discrete' if dataset.discrete else 'continuous'} actions; this agent needs "
                            f"obs_dim={agent.obs_dim}, discrete actions")
        bad = np.flatnonzero((dataset.actions[:dataset.size] >= n_actions).any(axis=1))
        if bad.size:
            raise DataError(f"replay buffer row {bad[0]} has an action outside [0, {n_actions})")
        view = copy.copy(dataset)  # same arrays and sampler
        view.gamma, view.n_step = c.gamma, c.n_steps
        return view
    if not hasattr(dataset, "__getitem__"):
        raise InputError(f"dataset must be a replay-buffer file, a ReplayBuffer or a mapping of arrays, "
                         f"got {type(dataset).__name__}")
    try:
        cols = {k: dataset[k] for k in ("obs", "actions", "rewards", "next_obs", "terminated")}
    except KeyError as exc:
        raise DataError(f"dataset has no field {exc}; need obs, actions, rewards, next_obs, terminated") from None
    truncated = dataset.get("truncated") if hasattr(dataset, "get") else None
    buf = ReplayBuffer.from_arrays(**cols, truncated=truncated, n_actions=n_actions, n_step=c.n_steps,
                                   gamma=c.gamma, seed=agent.seed)
    if buf.obs_dim != agent.obs_dim:
        raise DataError(f"dataset obs have {buf.obs_dim} features, the env has {agent.obs_dim}")
    return buf
