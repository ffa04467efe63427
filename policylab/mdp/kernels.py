"""Compiled one-pass kernels of the MDP layer: a dense P checked and, when sparse enough,
converted to CSR; the row-wise steps of the Garnet generator (no (rows, b) temporaries).

Dense P.

A dense (S, A, S) array of an MDP with few successors per (s, a) is mostly zeros: every
value-iteration sweep over it reads all S·A·S entries, while CSR reads only the nonzeros.
:func:`scan_dense` reads the array once (any strides, so pymdptoolbox's (A, S, S) layout is
read through a transposed view without a copy), checking every entry and collecting the
nonzeros; :class:`~policylab.mdp.TabularMDP` keeps CSR when the density is at most
``model.CSR_MAX_DENSITY`` (imported only then: numba is not needed for small MDPs).
"""

from __future__ import annotations

import numba
import numpy as np

BLOCK = 32  # entries checked per vectorized block


@numba.njit(cache=True)
def scan_dense(P, R3, max_nnz):
    """One pass over P (S, A, S) and, if R3 is (S, A, S), the rewards at P's nonzeros.

    Returns (ok, bad_row, bad_col, sums (S·A,), nnz, indptr (S·A+1,), indices, data, rewards):
    ok is False at the first entry that is NaN or negative (bad_row = s·A + a, bad_col = s');
    the CSR arrays are filled only while nnz ≤ max_nnz (then nnz counts on, arrays truncated).
    """
    S, A = P.shape[0], P.shape[1]
    rows = S * A
    with_r = R3.shape[0] > 0
    sums = np.empty(rows)
    indptr = np.zeros(rows + 1, np.int64)
    # np.empty does not touch the pages: only the nonzeros written cost memory
    cap = max_nnz + S
    indices, data = np.empty(cap, np.int32), np.empty(cap)
    rewards = np.empty(cap if with_r else 0)
    nnz, ok = 0, True
    for row in range(rows):
        s, a = row // A, row % A
        p_row = P[s, a]  # (S,) view, contiguous in the usual layouts
        acc = 0.0  # the row sum over its nonzeros only: x + 0.0 == x, so it is the full sum
        for b in range(0, S, BLOCK):
            e = min(b + BLOCK, S)
            m, block_ok = 0, True
            for t in range(b, e):  # branch-free, vectorized: count and check
                p = p_row[t]
                m += p != 0.0
                block_ok &= p >= 0.0  # False for negative or NaN
            ok &= block_ok
            if m:  # few blocks hold nonzeros: collect them (the block is in cache)
                for t in range(b, e):
                    p = p_row[t]
                    if p != 0.0:
                        acc += p
                        if nnz < cap:
                            indices[nnz], data[nnz] = t, p
                            if with_r:
                                rewards[nnz] = R3[s, a, t]
                        nnz += 1
        if not ok:
            for t in range(S):
                if not p_row[t] >= 0.0:
                    return False, row, t, sums, nnz, indptr, indices[:0], data[:0], rewards[:0]
        sums[row] = acc
        indptr[row + 1] = min(nnz, max_nnz)
    m = min(nnz, max_nnz)
    return True, -1, -1, sums, nnz, indptr, indices[:m].copy(), data[:m].copy(), \
        rewards[:m].copy() if with_r else rewards


@numba.njit(cache=True)
def rows_with_duplicates(succ):
    """(rows,) bool: row r of succ (rows, b) holds a repeated index (as np.sort + compare)."""
    rows, b = succ.shape
    out = np.zeros(rows, np.bool_)
    for r in range(rows):
        for i in range(1, b):
            for j in range(i):
                if succ[r, i] == succ[r, j]:
                    out[r] = True
        # O(b²) per row: Garnet rows are short (b ≪ S in the sparse regime)
    return out


@numba.njit(cache=True)
def spacings(cuts, out):
    """out[r] = the b gaps of [0, sorted cuts[r] (b−1,), 1] (np.diff of the padded row)."""
    rows, b = out.shape
    for r in range(rows):
        prev = 0.0
        for k in range(b - 1):
            out[r, k] = cuts[r, k] - prev
            prev = cuts[r, k]
        out[r, b - 1] = 1.0 - prev


@numba.njit(cache=True)
def sort_rows_by_key(key, val):
    """Sort each row of key (rows, b) ascending in place, permuting val's row alike
    (insertion sort; the keys of a row are distinct, so the order equals np.argsort's)."""
    rows, b = key.shape
    for r in range(rows):
        for i in range(1, b):
            k, v = key[r, i], val[r, i]
            j = i - 1
            while j >= 0 and key[r, j] > k:
                key[r, j + 1], val[r, j + 1] = key[r, j], val[r, j]
                j -= 1
            key[r, j + 1], val[r, j + 1] = k, v
