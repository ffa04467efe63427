"""Experience storage: plain containers of arrays the Agent fills and the algorithm reads.

``RolloutStorage`` (on-policy): (T, N) arrays filled step by step, then read whole and discarded.
No methods beyond allocation and flattening: advantages are computed by the pure functions in
``policylab.returns`` over these arrays. Row t holds the transition (s_t, a_t, r_{t+1}, s_{t+1}):

    next_values[t] = V(s_{t+1}) where s_{t+1} is the *true* next state — for a truncated episode
    the final observation (so truncation bootstraps), for a terminated one anything (it is
    masked by ``terminated``; termination does not bootstrap).

``ReplayBuffer`` (off-policy): a ring of the last ``capacity`` steps of every env holding
(s, a, r, s', terminated) with s' the true next state, sampled uniformly in minibatches; saved in
checkpoints (``state_dict``), so a resumed run samples the same minibatches.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

__all__ = ["ReplayBuffer", "RolloutStorage"]


@dataclass
class RolloutStorage:
    obs: np.ndarray          # (T, N, obs_dim) float32   s_t
    actions: np.ndarray      # (T, N) int64 or (T, N, act_dim) float32   a_t (unclipped sample)
    logp: np.ndarray         # (T, N) float32   log π_old(a_t|s_t)
    rewards: np.ndarray      # (T, N) float32   r_{t+1}
    values: np.ndarray       # (T, N) float32   V(s_t)
    next_values: np.ndarray  # (T, N) float32   V(s_{t+1}), V(final obs) on truncation
    terminated: np.ndarray   # (T, N) bool      s_{t+1} is terminal (no bootstrap)
    truncated: np.ndarray    # (T, N) bool      episode cut by a time limit (bootstrap)

    @classmethod
    def allocate(cls, n_steps: int, n_envs: int, obs_dim: int, action_shape: tuple[int, ...],
                 discrete: bool) -> RolloutStorage:
        T, N = n_steps, n_envs
        f32 = lambda *shape: np.zeros(shape, dtype=np.float32)
        return cls(
            obs=f32(T, N, obs_dim),
            actions=np.zeros((T, N, *action_shape), dtype=np.int64 if discrete else np.float32),
            logp=f32(T, N), rewards=f32(T, N), values=f32(T, N), next_values=f32(T, N),
            terminated=np.zeros((T, N), dtype=bool), truncated=np.zeros((T, N), dtype=bool),
        )

    @property
    def dones(self) -> np.ndarray:
        return self.terminated | self.truncated  # (T, N) episode boundary after step t

    def flat(self, name: str) -> np.ndarray:
        """Field ``name`` reshaped (T, N, ...) → (T·N, ...)."""
        a = getattr(self, name)
        return a.reshape(-1, *a.shape[2:])

    def names(self) -> list[str]:
        return [f.name for f in fields(self)]


@dataclass
class ReplayBuffer:
    obs: np.ndarray          # (C, N, obs_dim) float32   s
    actions: np.ndarray      # (C, N) int64 or (C, N, act_dim) float32   a
    rewards: np.ndarray      # (C, N) float32   r
    next_obs: np.ndarray     # (C, N, obs_dim) float32   s' (the final observation where an episode ended)
    terminated: np.ndarray   # (C, N) bool      s' is terminal (no bootstrap); truncation is not
    pos: int = 0             # next row to write
    full: bool = False       # every row holds a transition

    @classmethod
    def allocate(cls, buffer_size: int, n_envs: int, obs_dim: int, action_shape: tuple[int, ...],
                 discrete: bool) -> ReplayBuffer:
        """Room for ``buffer_size`` transitions in all (C = ⌈buffer_size / n_envs⌉ rows of N envs)."""
        C, N = max(-(-int(buffer_size) // n_envs), 1), n_envs
        return cls(obs=np.zeros((C, N, obs_dim), np.float32),
                   actions=np.zeros((C, N, *action_shape), np.int64 if discrete else np.float32),
                   rewards=np.zeros((C, N), np.float32), next_obs=np.zeros((C, N, obs_dim), np.float32),
                   terminated=np.zeros((C, N), bool))

    def __len__(self) -> int:
        """Transitions stored (all envs)."""
        return (self.obs.shape[0] if self.full else self.pos) * self.obs.shape[1]

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        """Store one step of every env (arrays with leading dimension N), overwriting the oldest."""
        t = self.pos
        self.obs[t], self.actions[t], self.rewards[t] = obs, actions, rewards
        self.next_obs[t], self.terminated[t] = next_obs, terminated
        self.pos = (t + 1) % self.obs.shape[0]
        self.full = self.full or self.pos == 0

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``batch_size`` transitions drawn uniformly with replacement: {field: (B, ...)}."""
        rows = self.obs.shape[0] if self.full else self.pos
        if rows == 0:
            raise RuntimeError("sample from an empty ReplayBuffer (collect before updating)")
        t = rng.integers(0, rows, size=batch_size)
        i = rng.integers(0, self.obs.shape[1], size=batch_size)
        return {name: getattr(self, name)[t, i] for name in ("obs", "actions", "rewards", "next_obs", "terminated")}

    def state_dict(self) -> dict[str, np.ndarray]:
        """The stored rows and the write position (for checkpoints)."""
        rows = self.obs.shape[0] if self.full else self.pos
        out = {name: getattr(self, name)[:rows] for name in ("obs", "actions", "rewards", "next_obs", "terminated")}
        return {**out, "pos": np.array([self.pos]), "full": np.array([self.full])}

    def load_state_dict(self, state: dict) -> None:
        rows = len(state["obs"])
        for name in ("obs", "actions", "rewards", "next_obs", "terminated"):
            getattr(self, name)[:rows] = state[name]
        self.pos, self.full = int(state["pos"][0]), bool(state["full"][0])
