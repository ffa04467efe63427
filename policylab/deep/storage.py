"""Rollout storage (on-policy): a plain container of (T, N) arrays filled step by step, then read
whole and discarded (off-policy methods use ``replay.ReplayBuffer``). No methods beyond allocation
and flattening: advantages are computed by the pure functions in ``policylab.returns`` over these
arrays. Row t holds the transition (s_t, a_t, r_{t+1}, s_{t+1}):

    next_values[t] = V(s_{t+1}) where s_{t+1} is the *true* next state — for a truncated episode
    the final observation (so truncation bootstraps), for a terminated one anything (it is
    masked by ``terminated``; termination does not bootstrap).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

__all__ = ["RolloutStorage"]


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

