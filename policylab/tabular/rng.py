"""One tiny PRNG and the samplers built on it, shared by the Python and the compiled path.

Both paths draw every random number from the same SplitMix64 stream (Steele, Lea &
Flood 2014), in the same order, so the compiled kernel and the plain-Python loop give
bit-identical results for the same seed. The state is a ``(1,) uint64`` array, mutated
in place. The functions are ``numba.njit(cache=True)``: the kernels call them inline,
the Python path calls the same compiled functions (and fills uniforms in blocks).
"""

from __future__ import annotations

import numba
import numpy as np

from policylab.errors import InputError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_INV_2_53 = 1.0 / 9007199254740992.0  # 2⁻⁵³


def make_rng_state(seed: int) -> np.ndarray:
    """A fresh (1,) uint64 SplitMix64 state for ``seed`` (any int ≥ 0)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative int, got {seed!r}")
    return np.array([int(seed) % (1 << 64)], dtype=np.uint64)


@numba.njit(cache=True, inline="always")
def next_uniform(state):
    """Next U ~ Uniform[0, 1) with 53 random bits; advances ``state`` (SplitMix64).

        z ← state + φ;  z ← (z ⊕ z≫30)·c₁;  z ← (z ⊕ z≫27)·c₂;  u = ((z ⊕ z≫31) ≫ 11) · 2⁻⁵³
    """
    z = state[0] + _GOLDEN
    state[0] = z
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return float(z >> _S11) * _INV_2_53


@numba.njit(cache=True, inline="always")
def fill_uniforms(state, out):
    """Fill ``out`` (n,) with the next n uniforms of the stream (the Python path's buffer)."""
    for i in range(out.shape[0]):
        out[i] = next_uniform(state)


@numba.njit(cache=True, inline="always")
def sample_cdf(cdf, u):
    """Index k of a categorical draw: the first k with u < F(k), F the (n,) cumulative
    distribution; the last index with positive mass if rounding leaves F(n−1) ≤ u."""
    n = cdf.shape[0]
    for k in range(n):
        if u < cdf[k]:
            return k
    k = n - 1
    while k > 0 and cdf[k] == cdf[k - 1]:
        k -= 1
    return k


@numba.njit(cache=True, inline="always")
def sample_transition(indptr, prob, row, u):
    """Position j in the CSR arrays of s' ~ P(·|s, a), for ``row = s·A + a`` and u ~ U[0, 1).

    Walks the row's probabilities accumulating p until u < Σp (inverse-CDF sampling);
    falls back to the row's last entry when rounding leaves Σp ≤ u.
    """
    lo, hi = indptr[row], indptr[row + 1]
    acc = 0.0
    for j in range(lo, hi):
        acc += prob[j]
        if u < acc:
            return j
    return hi - 1


@numba.njit(cache=True, inline="always")
def epsilon_greedy_action(q_s, epsilon, u_explore, u_pick):
    """a ~ ε-greedy(Q(s, ·)): uniform over all A actions with probability ε, else a greedy
    action, ties broken uniformly at random. Uses exactly two uniforms, always."""
    n_actions = q_s.shape[0]
    if u_explore < epsilon:
        return min(int(u_pick * n_actions), n_actions - 1)
    best, first, n_best = q_s[0], 0, 1
    for a in range(1, n_actions):
        if q_s[a] > best:
            best, first, n_best = q_s[a], a, 1
        elif q_s[a] == best:
            n_best += 1
    if n_best == 1:
        return first
    k = min(int(u_pick * n_best), n_best - 1)
    for a in range(first, n_actions):
        if q_s[a] == best:
            if k == 0:
                return a
            k -= 1
    return n_actions - 1  # unreachable unless Q has NaN
