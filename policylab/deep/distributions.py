"""Policy heads: the action distribution π(a|s) a network's output parameterizes.

Written directly (no ``torch.distributions``): the PPO update calls these thousands of times
on small batches, where the Distribution objects' validation and broadcasting dominate.

A head is a tiny stateless object chosen from the action space by :func:`head_for`:

- :class:`CategoricalHead`  — discrete actions,  params = logits ``(B, n)``
- :class:`GaussianHead`     — continuous actions, params = ``(mean (B, d), log_std (d,))``,
  a diagonal Gaussian whose log-std is a free parameter, independent of the state.

Every head has ``sample(params, generator)``, ``mode(params)``, ``log_prob(params, a)``,
``entropy(params)`` and ``log_prob_entropy(params, a)`` (both at once, sharing work).
For PPO's ``backend="numpy"`` each head also has ``np_sample(params, rng)`` (numpy Generator),
``np_log_prob_entropy(params, a)`` (the same formulas on arrays) and
``np_backward(cache, a, g_logp, g_entropy)`` (their derivatives:
∂L/∂params given ∂L/∂log π and ∂L/∂H; checked against autograd in tests/test_analytic_grads.py).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from policylab.errors import InputError

__all__ = ["CategoricalHead", "GaussianHead", "head_for"]

_LOG_2PI = math.log(2.0 * math.pi)


class CategoricalHead:
    """π(a|s) = softmax(z(s))_a with logits z (B, n).

        log π(a|s) = z_a − log Σ_b exp z_b,    H(π(·|s)) = −Σ_a π(a|s) log π(a|s)
    """

    discrete = True

    def __init__(self, n: int):
        self.n = int(n)
        self.param_dim = self.n  # network output size
        self.action_shape: tuple[int, ...] = ()

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gumbel-max: argmax_a (z_a + G_a), G_a = −log E_a, E_a ~ Exp(1) — exact, cheaper than multinomial."""
        e = torch.empty_like(logits).exponential_(generator=generator)  # (B, n)
        return (logits - e.log_()).argmax(dim=-1)  # (B,)

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)  # (B,)

    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        logp_all = torch.log_softmax(logits, dim=-1)  # (B, n)
        return logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)  # (B,)

    def entropy(self, logits: torch.Tensor) -> torch.Tensor:
        logp_all = torch.log_softmax(logits, dim=-1)
        return -(logp_all.exp() * logp_all).sum(-1)  # (B,)

    def log_prob_entropy(self, logits: torch.Tensor, actions: torch.Tensor):
        logp_all = torch.log_softmax(logits, dim=-1)  # (B, n)
        logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)  # (B,)
        return logp, -(logp_all.exp() * logp_all).sum(-1)

    def np_sample(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """numpy ``sample`` (Gumbel-max with a numpy Generator)."""
        return (logits - np.log(rng.standard_exponential(logits.shape, dtype=np.float32))).argmax(-1)

    def np_log_prob_entropy(self, logits: np.ndarray, actions: np.ndarray):
        """numpy ``log_prob_entropy``: (logp (B,), H (B,), cache for ``np_backward``)."""
        logp, ent, p, logp_all = _categorical_forward(logits, actions)
        return logp, ent, (p, logp_all, ent)

    def np_backward(self, cache, actions: np.ndarray, g_logp: np.ndarray, g_entropy) -> np.ndarray:
        """∂L/∂z (B, n) from ∂L/∂log π(a|s) (B,) and ∂L/∂H (B,) or scalar:

            ∂log π(a|s)/∂z_j = 𝟙[j = a] − π_j,    ∂H/∂z_j = −π_j (log π_j + H)
        """
        p, logp_all, ent = cache
        g_ent = np.broadcast_to(np.asarray(g_entropy, dtype=p.dtype), ent.shape).copy()  # (B,)
        return _categorical_backward(p, logp_all, ent, actions, g_logp, g_ent)


# numba kernels of the categorical head's numpy pair: one pass per row instead of ~10 numpy calls
# (the PPO update and the rollout call them thousands of times on small arrays).
@numba.njit(cache=True)
def _categorical_forward(logits, actions):
    """log-softmax (max-shifted), softmax, log π(a|s), H, row by row: (logp, H, π, log π)."""
    B, n = logits.shape
    logp_all, p = np.empty_like(logits), np.empty_like(logits)
    logp, ent = np.empty(B, logits.dtype), np.empty(B, logits.dtype)
    for i in range(B):
        m = logits[i, 0]
        for j in range(1, n):
            m = max(m, logits[i, j])
        s = 0.0
        for j in range(n):
            s += np.exp(logits[i, j] - m)
        lse = m + np.log(s)
        h = 0.0
        for j in range(n):
            logp_all[i, j] = logits[i, j] - lse
            p[i, j] = np.exp(logp_all[i, j])
            h -= p[i, j] * logp_all[i, j]
        ent[i] = h
        logp[i] = logp_all[i, actions[i]]
    return logp, ent, p, logp_all


@numba.njit(cache=True)
def _categorical_backward(p, logp_all, ent, actions, g_logp, g_ent):
    """g_ij = g_logp_i (𝟙[j = a_i] − π_ij) − g_ent_i π_ij (log π_ij + H_i)."""
    g = np.empty_like(p)
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            g[i, j] = -p[i, j] * (g_logp[i] + g_ent[i] * (logp_all[i, j] + ent[i]))
        g[i, actions[i]] += g_logp[i]
    return g


class GaussianHead:
    """π(a|s) = N(a; μ(s), diag σ²) with σ = exp(log_std) independent of the state.

        log π(a|s) = −½ Σ_i [((a_i − μ_i)/σ_i)² + 2 log σ_i + log 2π]
        H(π(·|s))  = Σ_i [log σ_i + ½ (1 + log 2π)]

    Actions are sampled unbounded; the trainer clips them to the Box bounds before
    ``env.step`` and stores the unclipped sample (as SB3 and CleanRL do).
    """

    discrete = False

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.param_dim = self.dim
        self.action_shape = (self.dim,)

    def sample(self, params, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, log_std = params
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + noise * log_std.exp()  # (B, d)

    def mode(self, params) -> torch.Tensor:
        return params[0]

    def log_prob(self, params, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = params
        z = (actions - mean) * torch.exp(-log_std)  # (B, d)
        return -0.5 * (z * z).sum(-1) - log_std.sum() - 0.5 * self.dim * _LOG_2PI  # (B,)

    def entropy(self, params) -> torch.Tensor:
        mean, log_std = params
        h = log_std.sum() + 0.5 * self.dim * (1.0 + _LOG_2PI)
        return h.expand(mean.shape[:-1])  # (B,)

    def log_prob_entropy(self, params, actions: torch.Tensor):
        return self.log_prob(params, actions), self.entropy(params)

    def np_sample(self, params, rng: np.random.Generator) -> np.ndarray:
        """numpy ``sample``: μ + σ ⊙ ξ, ξ ~ N(0, I) from a numpy Generator."""
        mean, log_std = params
        return mean + rng.standard_normal(mean.shape, dtype=np.float32) * np.exp(log_std)  # (B, d)

    def np_log_prob_entropy(self, params, actions: np.ndarray):
        """numpy ``log_prob_entropy`` for params = (mean (B, d), log_std (d,)): (logp, H, cache)."""
        mean, log_std = params
        inv_std = np.exp(-log_std)  # (d,)
        z = (actions - mean) * inv_std  # (B, d)
        logp = -0.5 * (z * z).sum(-1) - log_std.sum() - 0.5 * self.dim * _LOG_2PI  # (B,)
        ent = np.full(len(z), log_std.sum() + 0.5 * self.dim * (1.0 + _LOG_2PI), dtype=z.dtype)
        return logp.astype(z.dtype, copy=False), ent, (z, inv_std)

    def np_backward(self, cache, actions: np.ndarray, g_logp: np.ndarray, g_entropy):
        """(∂L/∂μ (B, d), ∂L/∂log σ (d,)) from ∂L/∂log π (B,) and ∂L/∂H (B,) or scalar:

            ∂log π/∂μ_i = z_i / σ_i,    ∂log π/∂log σ_i = z_i² − 1,    ∂H/∂log σ_i = 1
        """
        z, inv_std = cache
        g_ent = np.broadcast_to(np.asarray(g_entropy, dtype=z.dtype), g_logp.shape).sum()
        return g_logp[:, None] * z * inv_std, (g_logp[:, None] * (z * z - 1.0)).sum(0) + g_ent


def head_for(action_space):
    """The head for a Gymnasium action space: Discrete → Categorical, 1-d Box → Gaussian."""
    from gymnasium import spaces

    if isinstance(action_space, spaces.Discrete):
        if int(action_space.start) != 0:
            raise InputError(f"Discrete action space must start at 0, got start={action_space.start}")
        return CategoricalHead(action_space.n)
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        return GaussianHead(action_space.shape[0])
    raise InputError(
        f"unsupported action space {action_space}: policylab.deep handles Discrete and 1-d Box actions"
    )
