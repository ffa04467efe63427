"""Observation and reward normalization as Stable-Baselines3's ``VecNormalize`` does it.

Observations: o ↦ clip((o − μ) / √(σ² + ε), −c_o, c_o) with per-dimension running μ, σ² over
every observation the training envs produced (reset and step, all copies).
Rewards: r_t ↦ clip(r_t / √(Var[G] + ε), −c_r, c_r), where G_t = γ·G_{t−1} + r_t is the running
discounted return of each env copy (reset to 0 at episode end) and Var[G] its running variance —
the reward is scaled, not centred (Engstrom et al. 2020, "Implementation Matters", §3).

Running moments merge a batch at a time with the parallel update of Chan, Golub & LeVeque
(1979): the same mean/variance as over the whole stream, for any batch split. As in SB3 the
statistics start at μ = 0, σ² = 1 with a pseudo-count of 1e-4, and ε = 1e-8.

The pure functions below are the equations; :class:`Normalizer` holds the state (moments and the
per-env discounted returns), is frozen (``training = False``) for evaluation, and round-trips
through ``state_dict``/``load_state_dict`` (float64 arrays) so a resumed run continues exactly.
"""

from __future__ import annotations

import numpy as np

from policylab.errors import CheckpointError, InputError

__all__ = [
    "Normalizer",
    "RunningMeanStd",
    "discounted_return_update",
    "normalize_observation",
    "parallel_moments",
    "scale_reward",
]


def parallel_moments(mean_a, var_a, count_a, mean_b, var_b, count_b):
    """Chan et al. (1979) merge of two sets' (mean, population variance, count):

        δ = μ_b − μ_a,  n = n_a + n_b,  μ = μ_a + δ·n_b/n,
        σ² = (σ²_a·n_a + σ²_b·n_b + δ²·n_a·n_b/n) / n.

    Returns (μ, σ², n); arrays broadcast per dimension."""
    delta = mean_b - mean_a
    count = count_a + count_b
    mean = mean_a + delta * (count_b / count)
    m2 = var_a * count_a + var_b * count_b + np.square(delta) * (count_a * count_b / count)
    return mean, m2 / count, count


def normalize_observation(obs, mean, var, clip: float, eps: float = 1e-8) -> np.ndarray:
    """ô = clip((o − μ) / √(σ² + ε), −clip, clip), float32 (computed in float64)."""
    return np.clip((obs - mean) / np.sqrt(var + eps), -clip, clip).astype(np.float32)


def discounted_return_update(returns, rewards, gamma: float) -> np.ndarray:
    """G_t = γ·G_{t−1} + r_t per env copy (the stream whose variance scales rewards)."""
    return returns * gamma + rewards


def scale_reward(rewards, return_var, clip: float, eps: float = 1e-8) -> np.ndarray:
    """r̂ = clip(r / √(Var[G] + ε), −clip, clip), float32 (not centred: the sign of r is kept)."""
    return np.clip(rewards / np.sqrt(return_var + eps), -clip, clip).astype(np.float32)


class RunningMeanStd:
    """Per-dimension running mean and population variance of a stream of batches (float64)."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = float(epsilon)  # pseudo-count of the prior (μ = 0, σ² = 1), as SB3

    def update(self, batch) -> None:
        """Merge a batch (B, *shape) into the running moments (:func:`parallel_moments`)."""
        x = np.asarray(batch, dtype=np.float64)
        self.mean, self.var, self.count = parallel_moments(
            self.mean, self.var, self.count, x.mean(axis=0), x.var(axis=0), float(x.shape[0]))


class Normalizer:
    """SB3 ``VecNormalize`` semantics for ``n_envs`` copies, driven by the agent's env loop.

    ``reset(obs)`` and ``step(obs, rewards, dones)`` update the statistics (when ``training``)
    and return normalized observations and scaled rewards; ``obs(x)`` normalizes with the
    current statistics and never updates them (``act``, ``evaluate``, final observations)."""

    def __init__(self, obs_dim: int, n_envs: int, gamma: float, *, normalize_obs: bool = True,
                 normalize_reward: bool = True, clip_obs: float = 10.0, clip_reward: float = 10.0,
                 epsilon: float = 1e-8):
        if clip_obs <= 0 or clip_reward <= 0:
            raise InputError(f"clip_obs and clip_reward must be > 0, got {clip_obs}, {clip_reward}")
        self.normalize_obs, self.normalize_reward = bool(normalize_obs), bool(normalize_reward)
        self.clip_obs, self.clip_reward, self.gamma, self.epsilon = clip_obs, clip_reward, gamma, epsilon
        self.obs_rms = RunningMeanStd((obs_dim,))
        self.ret_rms = RunningMeanStd(())
        self.returns = np.zeros(n_envs)  # (N,) running discounted return G of each copy
        self.training = True

    def obs(self, obs) -> np.ndarray:
        """Normalize (…, obs_dim) observations with the current statistics (no update)."""
        if not self.normalize_obs:
            return np.asarray(obs, dtype=np.float32)
        return normalize_observation(np.asarray(obs, np.float64), self.obs_rms.mean, self.obs_rms.var,
                                     self.clip_obs, self.epsilon)

    def reset(self, obs) -> np.ndarray:
        """First observations (N, obs_dim) of a reset: update μ, σ², zero G, return ô."""
        self.returns[:] = 0.0
        if self.training and self.normalize_obs:
            self.obs_rms.update(obs)
        return self.obs(obs)

    def step(self, obs, rewards, dones):
        """One vector step: (N, obs_dim) next observations (already auto-reset where ``dones``),
        (N,) rewards, (N,) episode-ended flags → (ô (N, obs_dim), r̂ (N,)), both float32."""
        if self.training and self.normalize_obs:
            self.obs_rms.update(obs)
        out = self.obs(obs)
        r = np.asarray(rewards, dtype=np.float64)
        if self.training:
            self.returns = discounted_return_update(self.returns, r, self.gamma)
            self.ret_rms.update(self.returns)
        if self.normalize_reward:
            r = scale_reward(r, self.ret_rms.var, self.clip_reward, self.epsilon)
        self.returns[np.asarray(dones, dtype=bool)] = 0.0
        return out, np.asarray(r, dtype=np.float32)

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """float64 arrays: obs μ, σ², count; return μ, σ², count; per-env G."""
        return {"obs_mean": self.obs_rms.mean.copy(), "obs_var": self.obs_rms.var.copy(),
                "obs_count": np.array(self.obs_rms.count), "ret_mean": np.array(self.ret_rms.mean),
                "ret_var": np.array(self.ret_rms.var), "ret_count": np.array(self.ret_rms.count),
                "returns": self.returns.copy()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (scalars may come back as 1-element arrays)."""
        try:
            obs_mean = np.asarray(state["obs_mean"], np.float64)
            returns = np.asarray(state["returns"], np.float64)
            if obs_mean.shape != self.obs_rms.mean.shape or returns.shape != self.returns.shape:
                raise ValueError(f"shapes {obs_mean.shape}, {returns.shape} do not fit "
                                 f"{self.obs_rms.mean.shape}, {self.returns.shape}")
            self.obs_rms.mean, self.obs_rms.var = obs_mean, np.asarray(state["obs_var"], np.float64)
            self.obs_rms.count = float(np.asarray(state["obs_count"]).reshape(()))
            self.ret_rms.mean = np.asarray(state["ret_mean"], np.float64).reshape(())
            self.ret_rms.var = np.asarray(state["ret_var"], np.float64).reshape(())
            self.ret_rms.count = float(np.asarray(state["ret_count"]).reshape(()))
            self.returns = returns.copy()
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"normalization statistics do not fit this agent: {exc}") from None
