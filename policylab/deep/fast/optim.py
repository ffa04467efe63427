"""The numpy backend's optimizer step: Adam in one compiled pass on the flat buffers that torch's
optimizer also owns (so checkpoints and the torch backend see the same state). Gradient clipping on
the flat buffer is ``networks.clip_grad_norm`` (both backends use it).
"""

from __future__ import annotations

import numba
import numpy as np

from policylab.errors import InputError

__all__ = ["adam_step"]


# fast-math without nnan/ninf: the sums it returns must carry a NaN/inf to the divergence guard
@numba.njit(cache=True, fastmath={"nsz", "arcp", "contract", "afn", "reassoc"}, error_model="numpy")
def _adam_(param, grad, m, v, lr, beta1, beta2, eps, step, target, tau):
    bias1, bias2_sqrt = 1.0 - beta1 ** step, np.sqrt(1.0 - beta2 ** step)
    step_size = np.float32(lr / bias1)
    b2, e, c2 = np.float32(beta2), np.float32(eps), np.float32(bias2_sqrt)
    w1, w2 = np.float32(1.0 - beta1), np.float32(1.0 - beta2)  # 1 − β in double first, as torch
    tiny, zero = np.float32(1.1754944e-38), np.float32(0.0)  # smallest normal float32
    t = np.float32(tau)
    sum_g, sum_p, sum_t = zero, zero, zero
    for i in range(param.size):
        g = grad[i]
        sum_g += g
        mi = m[i] + w1 * (g - m[i])
        vi = b2 * v[i] + w2 * (g * g)
        m[i] = mi if abs(mi) >= tiny else zero  # flush subnormals (see adam_step)
        v[i] = vi if vi >= tiny else zero
        param[i] -= step_size * m[i] / (np.sqrt(v[i]) / c2 + e)
        sum_p += param[i]
        if tau > 0.0:
            target[i] += t * (param[i] - target[i])  # torch's lerp for τ < ½
            sum_t += target[i]
    return sum_g, sum_p, sum_t


def adam_step(optimizer, param, target=None, tau: float = 0.0) -> tuple[float, float, float]:
    """One Adam step (Kingma & Ba 2015) of ``torch.optim.Adam`` ``optimizer`` on its flat ``param``,
    in one compiled pass over numpy views of the optimizer's own state (so checkpoints and the
    torch backend see the same ``step``, ``exp_avg``, ``exp_avg_sq``), with torch's update:

        m ← β₁m + (1−β₁)g,   v ← β₂v + (1−β₂)g²,   θ ← θ − α/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)

    ~10× cheaper than ``optimizer.step()`` on a 9k-parameter net (no dispatch, no temporaries).
    Moments below the smallest normal float32 (1.2e-38) are set to 0: a ReLU unit that is dead on
    every minibatch has g = 0, so its m decays by β₁ per step into subnormals, where x86 arithmetic
    is ~20× slower (measured: 0.3 ms instead of 18 µs per step on DQN's 68k-parameter net). Their
    share of the step is below 1e-30, so the numbers agree with torch's Adam to float rounding.

    With ``target`` (a tensor shaped like ``param``) and 0 < τ < ½ the same pass then moves it,
    θ⁻ ← θ⁻ + τ(θ − θ⁻) (``losses.polyak_update``, torch's lerp), while θ is still in cache.

    Returns (Σ g, Σ θ after the step, Σ θ⁻ after it (0 without a target)), float32 sums taken in
    the same pass: a NaN/inf anywhere makes its sum non-finite, which the divergence guard reads
    instead of summing the buffers again (``guards.check_finite``'s ``known`` sums).
    """
    group = optimizer.param_groups[0]
    if group["weight_decay"] or group["amsgrad"] or group["maximize"]:
        raise InputError("adam_step implements plain Adam (no weight decay, amsgrad or maximize)")
    if target is not None and tau and (not 0.0 < tau < 0.5 or target.shape != param.shape):
        raise InputError(f"adam_step's Polyak update needs 0 < tau < 0.5 and a target shaped like the parameter, "
                         f"got tau={tau!r}, {tuple(target.shape)}")
    state = optimizer.state[param]
    if not state:  # what torch's Adam creates on its first step
        import torch

        state["step"] = torch.zeros((), dtype=torch.float32)
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    step, *views = _views(optimizer, param, state)
    step += 1
    beta1, beta2 = group["betas"]
    target, tau = (views[0][:0], 0.0) if target is None or not tau else (target.detach().numpy().reshape(-1), tau)
    return _adam_(*views, float(group["lr"]), float(beta1), float(beta2), float(group["eps"]), float(step), target,
                  float(tau))


def _views(optimizer, param, state) -> list:
    """numpy views [step (0-d), θ, g, m, v] (flat) of ``param``, its gradient and its Adam state,
    made once and kept on the optimizer (making them costs ~6 µs, more than the pass on a small
    net): reused while the same tensors hold the same memory (``load_state_dict`` or a new
    ``.grad`` brings new tensors, hence new views)."""
    tensors = (param, param.grad, state["step"], state["exp_avg"], state["exp_avg_sq"])
    cache = optimizer.__dict__.setdefault("_numpy_views", {})
    cached = cache.get(id(param))
    if (cached is None or any(a is not b for a, b in zip(cached[0], tensors))
            or cached[1] != (param.data_ptr(), param.grad.data_ptr())):
        views = [state["step"].numpy()] + [t.detach().numpy().reshape(-1) for t in (param, *tensors[1:2], *tensors[3:])]
        cached = cache[id(param)] = (tensors, (param.data_ptr(), param.grad.data_ptr()), views)
    return cached[2]
