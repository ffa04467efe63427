"""The lean Llama decoder's one-token step as one compiled call (numba), for float32 weights packed by MKL.

A one-token decode step of a small model runs ~40 torch operations per layer, a few µs of dispatch each
(≈ 1 ms per step at 6 layers, whatever the model's width); here the whole step — embedding, RMSNorm,
the four products per layer (MKL's packed ``cblas_sgemm_compute`` through :func:`policylab.deep.fast.blas.
packed_matmul`, the same call torch's ``mkl._mkl_linear`` makes), RoPE, the cache write, attention over
the cached keys, SwiGLU, the residual adds, the head — is one call over the decoder's own buffers. It
computes what :meth:`policylab.llm.fastdecode.LlamaDecoder._step_one` computes, with the same folded,
packed weights, and writes the same recorded values (its trace), equal up to float rounding (tested).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from policylab.deep.fast.blas import packed_matmul

__all__ = ["decode_step"]

_FAST = {"reassoc", "contract"}  # reassociated sums (vectorized dot products) and FMAs: float rounding only


@numba.njit(cache=True, fastmath=_FAST, inline="always")
def _inv_rms(x, eps, r):
    """r_b = 1 / √(mean_j x_bj² + ε) per row of x (B, n): RMSNorm's scale, its weight folded into the next product."""
    B, n = x.shape
    for b in range(B):
        s = np.float32(0.0)
        for j in range(n):
            s += x[b, j] * x[b, j]
        r[b] = np.float32(1.0) / math.sqrt(s / np.float32(n) + eps)


@numba.njit(cache=True, fastmath=_FAST, inline="always")
def _scale_rows(y, r):
    """y_b ← r_b · y_b (the RMSNorm scale applied after the product)."""
    for b in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[b, j] *= r[b]


@numba.njit(cache=True, fastmath=_FAST, inline="always")
def _rope(row, cos, sin, heads, D):
    """RoPE in place on the first ``heads`` heads of ``row``: x·cos + [x₂, x₁]·sin, sin signed [−sin₁, sin₂]."""
    half = D // 2
    for h in range(heads):
        o = h * D
        for j in range(half):
            x1, x2 = row[o + j], row[o + half + j]
            row[o + j] = x1 * cos[j] + x2 * sin[j]
            row[o + half + j] = x2 * cos[half + j] + x1 * sin[half + j]


@numba.njit(cache=True, fastmath=_FAST, inline="always")
def _attend(q, keys, values, bias, stop, scale, scores, out):
    """out = softmax(scale · q kᵀ + bias) v over positions 0…stop−1 for one query head, q (D,), keys and
    values (≥ stop, D), bias (≥ stop,) (0, or −inf at padding)."""
    D = q.shape[0]
    m = np.float32(-np.inf)
    for t in range(stop):
        s = np.float32(0.0)
        for d in range(D):
            s += q[d] * keys[t, d]
        s = bias[t] + scale * s
        scores[t] = s
        m = max(m, s)
    total = np.float32(0.0)
    for t in range(stop):
        e = math.exp(scores[t] - m)
        scores[t] = e
        total += e
    inv = np.float32(1.0) / total
    out[:] = 0.0
    for t in range(stop):
        p = scores[t] * inv
        for d in range(D):
            out[d] += p * values[t, d]


@numba.njit(cache=True, fastmath=_FAST)
def decode_step(ids, pos, start, embed, cos, sin, packed, weights, head, kv, bias, trace, record, n_heads, eps, scale,
                x, r, qkv, att, gu, act, out, scores, logits):
    """One new token per row at cache position ``start``; returns nothing, writes ``logits`` (B, V).

    ids, pos (B,) int64; embed (V, hidden); cos, sin (max_len, D) (sin signed for RoPE); packed the MKL-packed weights
    (:func:`policylab.deep.fast.blas.pack_weights`; RMSNorm weights folded in), weights (layers, 4) the offsets
    there of q|k|v, o, gate|up and down, head the lm head's; kv (layers, 2, B, KV, ≥ max_len, D) the cache; bias (B·KV, 1, ≥ max_len);
    trace (layers, ≥ max_len, B, 2I + H·D + 2·hidden) written at row ``start`` when ``record`` (columns
    gate|up, q, o, down, as ``LlamaDecoder.trace_columns``). Scratch: x (B, hidden), r (B,), qkv
    (B, (H + 2·KV)·D), att (B, H·D), gu (B, 2I), act (B, I), out (B, hidden), scores (≥ max_len,)."""
    B = x.shape[0]
    KV, D = kv.shape[3], kv.shape[5]
    H = n_heads
    group = H // KV
    q_end, k_end = H * D, (H + KV) * D
    width = gu.shape[1]
    inter = width // 2
    hidden = x.shape[1]
    stop = start + 1
    for b in range(B):
        x[b] = embed[ids[b]]
    for i in range(weights.shape[0]):
        _inv_rms(x, eps, r)
        packed_matmul(x, packed, weights[i, 0], qkv)  # (B, (H + 2·KV)·D) = [q | k | v]
        _scale_rows(qkv, r)
        for b in range(B):
            row = qkv[b]
            _rope(row, cos[pos[b]], sin[pos[b]], H + KV, D)
            for g in range(KV):
                kv[i, 0, b, g, start] = row[q_end + g * D : q_end + (g + 1) * D]
                kv[i, 1, b, g, start] = row[k_end + g * D : k_end + (g + 1) * D]
                keys, values, key_bias = kv[i, 0, b, g], kv[i, 1, b, g], bias[b * KV + g, 0]
                for h in range(g * group, (g + 1) * group):  # the query heads sharing kv head g
                    _attend(row[h * D : (h + 1) * D], keys, values, key_bias, stop, scale, scores,
                            att[b, h * D : (h + 1) * D])
        if record:
            rec = trace[i, start]  # (B, columns)
            rec[:, width : width + q_end] = qkv[:, :q_end]
            o_out = rec[:, width + q_end : width + q_end + hidden]
            d_out = rec[:, width + q_end + hidden : width + q_end + 2 * hidden]
            g_u = rec[:, :width]
        else:
            o_out, d_out, g_u = out, out, gu
        packed_matmul(att, packed, weights[i, 1], o_out)  # (B, hidden)
        x += o_out
        _inv_rms(x, eps, r)
        packed_matmul(x, packed, weights[i, 2], g_u)  # (B, 2I) = [gate | up]
        _scale_rows(g_u, r)
        for b in range(B):
            for j in range(inter):
                g = g_u[b, j]
                act[b, j] = g / (np.float32(1.0) + math.exp(-g)) * g_u[b, inter + j]  # silu(gate) · up
        packed_matmul(act, packed, weights[i, 3], d_out)  # (B, hidden)
        x += d_out
    _inv_rms(x, eps, r)
    packed_matmul(x, packed, head, logits)  # (B, V)
    _scale_rows(logits, r)
