"""A numpy mirror of :class:`~policylab.deep.networks.PolicyValueNet` with hand-written backward
(the numpy backend's network).

Why: on CartPole-sized problems the PPO update is 20 epochs × a handful of (256 × 64) matrix
products per 256 env steps. Torch spends ~5–10 µs of dispatch and autograd bookkeeping per op,
more than the arithmetic, so the update costs ~1 ms per gradient step; the same forward and
backward in numpy cost a fraction of that. The mirror holds *views* of the torch parameters and
gradients (the one flat buffer of :func:`~policylab.deep.networks.flatten_parameters`): torch's
Adam state (stepped by ``fast.optim.adam_step``), ``load_state_dict`` and checkpoints work on the very
same memory; ``act``/``evaluate`` and the rollout read the weights through the mirror.

Chain rule through the MLP (batch rows, W_l (out, in) as in ``nn.Linear``):

    forward    a_l = h_{l−1} W_lᵀ + b_l,     h_l = σ(a_l),     out = a_L
    backward   ∂L/∂W_l = g_lᵀ h_{l−1},   ∂L/∂b_l = Σ_batch g_l,   g_{l−1} = (g_l W_l) ⊙ σ'(a_{l−1})

with σ' written in terms of the output h: tanh 1 − h², relu 𝟙[h > 0], elu 𝟙[h > 0] + (h + 1)·𝟙[h ≤ 0].
Each layer is one numba kernel each way (BLAS product + bias + activation or its derivative in one
pass): on 256 × 64 arrays Python-level call overhead is as large as the arithmetic.
The loss derivatives come from ``policylab.losses.grads`` and the numpy heads (``fast.heads``).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import nn

from policylab.deep.fast.blas import matmul
from policylab.deep.networks import ACTIVATIONS
from policylab.errors import InputError

__all__ = ["ACTIVATION_CODES", "NumpyMLP", "NumpyPolicyValueNet", "mlp_unsupported"]


ACTIVATION_CODES = {"tanh": 0, "relu": 1, "elu": 2}  # kernels take a code; -1 = identity (output layer)


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _tanh32(v):
    """Eigen's float32 rational tanh (the one TensorFlow's CPU kernels use): ≤ 5 ulp from the exact
    value and it vectorizes (np.tanh is ~6× slower here); clamped at ±7.905, where tanh is ±1 in float32."""
    v = min(max(v, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
    x2 = v * v
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return v * p / q


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _sigma(a, kind):
    if kind == 0:
        return _tanh32(a)
    if kind == 1:
        return max(a, np.float32(0.0))
    if kind == 2:
        return a if a > 0 else np.expm1(a)
    return a


@numba.njit(inline="always", fastmath=True, error_model="numpy")
def _sigma_grad(h, kind):
    """σ'(a) in terms of h = σ(a): tanh 1 − h², relu 𝟙[h > 0], elu 𝟙[h > 0] + (h + 1)·𝟙[h ≤ 0]."""
    if kind == 0:
        return np.float32(1.0) - h * h
    if kind == 1:
        return np.float32(1.0) if h > 0 else np.float32(0.0)
    return np.float32(1.0) if h > 0 else h + np.float32(1.0)


@numba.njit(cache=True, fastmath=True, error_model="numpy")  # no ZeroDivision check: vectorizes
def _layer_forward(x, W, b, kind):
    """h = σ(x Wᵀ + b): one BLAS product, then bias and activation in one pass. (B, out)"""
    a = np.empty((x.shape[0], W.shape[0]), dtype=x.dtype)
    matmul(x, W, a, tb=True)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = _sigma(a[i, j] + b[j], kind)
    return a


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _layer_backward(g, h_prev, W, gW, gb, kind_prev):
    """gW ← gᵀ h_prev, gb ← Σ_batch g; returns ∂L/∂a_prev = (g W) ⊙ σ'(a_prev), or an empty
    array when kind_prev < -1 (first layer: nothing to propagate to)."""
    matmul(g, h_prev, gW, ta=True)
    for j in range(g.shape[1]):
        gb[j] = 0.0
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            gb[j] += g[i, j]
    if kind_prev < -1:
        return np.empty((0, 0), dtype=g.dtype)
    gp = np.empty((g.shape[0], W.shape[1]), dtype=g.dtype)
    matmul(g, W, gp)
    for i in range(gp.shape[0]):
        for j in range(gp.shape[1]):
            gp[i, j] *= _sigma_grad(h_prev[i, j], kind_prev)
    return gp


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _layer_input_grad(g, h_prev, rows, W, kind_prev):
    """∂L/∂a_prev = (g W) ⊙ σ'(a_prev) (kind_prev = -1: the input itself, no activation), no weight
    gradients: what a loss needs to differentiate through a network it does not train. Row r of g
    is batch row rows[r] of the cache h_prev (a subset: the other rows have g = 0). (len(rows), in)"""
    gp = np.empty((g.shape[0], W.shape[1]), dtype=g.dtype)
    matmul(g, W, gp)
    if kind_prev >= 0:
        for r in range(gp.shape[0]):
            i = rows[r]
            for j in range(gp.shape[1]):
                gp[r, j] *= _sigma_grad(h_prev[i, j], kind_prev)
    return gp


def mlp_unsupported(activation: str, *seqs: nn.Sequential) -> str | None:
    """Why :class:`NumpyMLP` cannot mirror the ``nn.Sequential`` networks ``seqs`` (None when it can):
    it needs plain MLPs (Linear + one activation with a numpy kernel) in float32 on the CPU."""
    if activation not in ACTIVATION_CODES:
        return f"no numpy kernel for activation {activation!r}"
    for seq in seqs:
        if not all(type(m) in (nn.Linear, ACTIVATIONS[activation]) for m in seq):
            return "the network has layers other than Linear and the activation"
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in seq.parameters()):
            return "the network is not float32 on the CPU"
    return None


class NumpyMLP:
    """Forward/backward of an ``mlp(...)`` ``nn.Sequential`` on views of its weights and grads."""

    def __init__(self, seq: nn.Sequential, activation: str):
        if activation not in ACTIVATION_CODES:
            raise InputError(f"activation must be one of {sorted(ACTIVATION_CODES)}, got {activation!r}")
        linears = [m for m in seq if isinstance(m, nn.Linear)]
        for m in linears:
            if m.weight.grad is None:
                raise InputError("call flatten_parameters(net) first: the mirror needs gradient buffers")
        self.W = [m.weight.detach().numpy() for m in linears]  # (out, in) views, shared memory
        self.b = [m.bias.detach().numpy() for m in linears]  # (out,)
        self.gW = [m.weight.grad.numpy() for m in linears]
        self.gb = [m.bias.grad.numpy() for m in linears]
        self.kind = ACTIVATION_CODES[activation]

    def forward(self, x: np.ndarray):
        """out (B, out_dim) and the cache [x, h_1, …, h_{L−1}] for :meth:`backward`."""
        hs = [np.ascontiguousarray(x, dtype=np.float32)]  # the kernels' BLAS calls need contiguous float32
        for W, b in zip(self.W[:-1], self.b[:-1]):
            hs.append(_layer_forward(hs[-1], W, b, self.kind))  # (B, width)
        return _layer_forward(hs[-1], self.W[-1], self.b[-1], -1), hs

    def backward(self, g: np.ndarray, hs: list) -> None:
        """Write ∂L/∂W_l, ∂L/∂b_l into the torch .grad views, given g = ∂L/∂out (B, out_dim)."""
        for i in range(len(self.W) - 1, -1, -1):
            g = _layer_backward(g, hs[i], self.W[i], self.gW[i], self.gb[i], self.kind if i else -2)

    def input_grad(self, g: np.ndarray, hs: list, rows: np.ndarray | None = None) -> np.ndarray:
        """∂L/∂x (B, in_dim) given g = ∂L/∂out, leaving the weight gradients alone (half the backward's
        products). With ``rows`` (int indices into the cached batch) g and the result hold those rows
        only: where ∂L/∂out is zero on the other rows, their products are skipped."""
        rows = np.arange(len(g)) if rows is None else rows
        for i in range(len(self.W) - 1, -1, -1):
            g = _layer_input_grad(g, hs[i], rows, self.W[i], self.kind if i else -1)
        return g


class NumpyPolicyValueNet:
    """numpy twin of ``PolicyValueNet``: ``policy_params``/``value`` return (output, cache) and
    ``policy_backward``/``value_backward`` write gradients into the shared torch buffers."""

    def __init__(self, net, activation: str):
        self.actor = NumpyMLP(net.actor, activation)
        self.critic = None if net.critic is None else NumpyMLP(net.critic, activation)
        self.log_std = None if net.log_std is None else net.log_std.detach().numpy()
        self.g_log_std = None if net.log_std is None else net.log_std.grad.numpy()

    def shares_memory_with(self, net) -> bool:
        """False once ``net``'s parameters or gradients no longer live where the mirror's views point
        (e.g. after ``load_state_dict(assign=True)``)."""
        pairs = [(w, g, p) for mlp, seq in ((self.actor, net.actor), (self.critic, net.critic)) if mlp is not None
                 for w, g, p in zip(mlp.W, mlp.gW, (m.weight for m in seq if isinstance(m, nn.Linear)))]
        return all(p.grad is not None and w.ctypes.data == p.data_ptr() and g.ctypes.data == p.grad.data_ptr()
                   for w, g, p in pairs)

    def policy_params(self, obs: np.ndarray):
        out, cache = self.actor.forward(obs)  # logits (B, n) or mean (B, d)
        return (out if self.log_std is None else (out, self.log_std)), cache

    def policy_backward(self, g_params, cache) -> None:
        if self.log_std is None:
            self.actor.backward(g_params, cache)
        else:
            g_mean, g_log_std = g_params
            self.actor.backward(g_mean, cache)
            self.g_log_std[...] = g_log_std

    def value(self, obs: np.ndarray):
        out, cache = self.critic.forward(obs)
        return out[:, 0], cache  # (B,)

    def value_backward(self, g_values: np.ndarray, cache) -> None:
        self.critic.backward(g_values[:, None], cache)
