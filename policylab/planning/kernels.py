"""The value-iteration sweep over a CSR P in one compiled pass (no (S·A,) temporaries).

    V'(s) = max_a [R(s, a) + γ Σ_s' P(s'|s, a) V(s')],   V'(s) = 0 on terminal states

The sum runs over row s·A + a of the CSR arrays in stored order, as scipy's CSR mat-vec
does, so the numbers equal the numpy sweep's. Imported only for sparse MDPs (numba).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def csr_optimality_sweep(indptr, indices, data, R_flat, gamma, live, V, out):
    """out = T* V for P in CSR rows s·A + a; returns (min, max) of out − V."""
    S = V.shape[0]
    A = R_flat.shape[0] // S
    lo, hi = np.inf, -np.inf
    for s in range(S):
        best = 0.0
        if live[s]:
            for a in range(A):
                row = s * A + a
                acc = 0.0
                for k in range(indptr[row], indptr[row + 1]):
                    acc += data[k] * V[indices[k]]
                q = acc * gamma + R_flat[row]
                if a == 0 or q > best:
                    best = q
        out[s] = best
        d = best - V[s]
        lo, hi = min(lo, d), max(hi, d)
    return lo, hi
