"""numpy twins of the policy heads in ``policylab.deep.distributions``, with their derivatives (the
numpy backend's heads; checked against autograd of the torch heads in tests/test_analytic_grads.py).

Each has ``sample(params, rng)`` (numpy Generator), ``log_prob_entropy(params, a)`` → (log π(a|s) (B,),
H (B,), cache) and ``backward(cache, a, g_logp, g_entropy)`` → ∂L/∂params given ∂L/∂log π and ∂L/∂H.
``numpy_head(head)`` returns the twin of a torch head, or None when there is none (→ torch backend).
"""

from __future__ import annotations

import numba
import numpy as np

from policylab.deep.distributions import _LOG_2PI, CategoricalHead, GaussianHead

__all__ = ["NumpyCategoricalHead", "NumpyGaussianHead", "numpy_head"]


class NumpyCategoricalHead:
    """π(a|s) = softmax(z(s))_a on numpy logits z (B, n); see ``CategoricalHead``."""

    def __init__(self, n: int):
        self.n = int(n)

    def sample(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """a ~ π(·|s) by Gumbel-max, from a numpy Generator. (B,)"""
        return (logits - np.log(rng.standard_exponential(logits.shape, dtype=np.float32))).argmax(-1)

    def log_prob_entropy(self, logits: np.ndarray, actions: np.ndarray):
        """(log π(a|s) (B,), H (B,), cache for ``backward``)."""
        logp, ent, p, logp_all = _categorical_forward(logits, actions)
        return logp, ent, (p, logp_all, ent)

    def backward(self, cache, actions: np.ndarray, g_logp: np.ndarray, g_entropy) -> np.ndarray:
        """∂L/∂z (B, n) from ∂L/∂log π(a|s) (B,) and ∂L/∂H (B,) or scalar:

            ∂log π(a|s)/∂z_j = 𝟙[j = a] − π_j,    ∂H/∂z_j = −π_j (log π_j + H)
        """
        p, logp_all, ent = cache
        g_ent = np.broadcast_to(np.asarray(g_entropy, dtype=p.dtype), ent.shape).copy()  # (B,)
        return _categorical_backward(p, logp_all, ent, actions, g_logp, g_ent)


class NumpyGaussianHead:
    """N(a; μ(s), diag σ²) on numpy params (mean (B, d), log_std (d,)); see ``GaussianHead``."""

    def __init__(self, dim: int):
        self.dim = int(dim)

    def sample(self, params, rng: np.random.Generator) -> np.ndarray:
        """a = μ + σ ⊙ ξ, ξ ~ N(0, I) from a numpy Generator. (B, d)"""
        mean, log_std = params
        return mean + rng.standard_normal(mean.shape, dtype=np.float32) * np.exp(log_std)  # (B, d)

    def log_prob_entropy(self, params, actions: np.ndarray):
        """(log π(a|s) (B,), H (B,), cache for ``backward``) for params = (mean (B, d), log_std (d,))."""
        mean, log_std = params
        inv_std = np.exp(-log_std)  # (d,)
        z = (actions - mean) * inv_std  # (B, d)
        logp = -0.5 * (z * z).sum(-1) - log_std.sum() - 0.5 * self.dim * _LOG_2PI  # (B,)
        ent = np.full(len(z), log_std.sum() + 0.5 * self.dim * (1.0 + _LOG_2PI), dtype=z.dtype)
        return logp.astype(z.dtype, copy=False), ent, (z, inv_std)

    def backward(self, cache, actions: np.ndarray, g_logp: np.ndarray, g_entropy):
        """(∂L/∂μ (B, d), ∂L/∂log σ (d,)) from ∂L/∂log π (B,) and ∂L/∂H (B,) or scalar:

            ∂log π/∂μ_i = z_i / σ_i,    ∂log π/∂log σ_i = z_i² − 1,    ∂H/∂log σ_i = 1
        """
        z, inv_std = cache
        g_ent = np.broadcast_to(np.asarray(g_entropy, dtype=z.dtype), g_logp.shape).sum()
        return g_logp[:, None] * z * inv_std, (g_logp[:, None] * (z * z - 1.0)).sum(0) + g_ent


def numpy_head(head):
    """The numpy twin of a torch head (``CategoricalHead``/``GaussianHead``), None for any other."""
    if type(head) is CategoricalHead:
        return NumpyCategoricalHead(head.n)
    if type(head) is GaussianHead:
        return NumpyGaussianHead(head.dim)
    return None


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
