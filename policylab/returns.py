"""Returns and advantages: pure functions over arrays (numpy in -> numpy out, torch in -> torch out).

Each function implements one equation of the lecture; the equation is in its docstring.
Time-indexed names follow rlax: ``r_t`` is the reward received after acting at step t,
``v_t`` the value estimate of s_t.
"""

from __future__ import annotations

import numpy as np

from policylab.errors import InputError


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def group_relative_advantages(rewards, group_size: int, scale: str = "none", eps: float = 1e-4):
    """Group-relative advantage of GRPO (lecture §7.2, Shao et al. 2024).

        Â_i = r_i − r̄,   r̄ = (1/G) Σ_j r_j              (scale="none", the lecture's form)
        Â_i = (r_i − r̄) / (std(r) + eps)                 (scale="std", DeepSeekMath)

    ``rewards`` is flat, shape (B,), with the G completions of each prompt contiguous, so
    B = n_prompts · G. std is the unbiased sample std (as TRL computes it). A group whose
    rewards are all equal gets zero advantage (never NaN): the numerator is exactly 0.
    Returns an array of shape (B,), same library and dtype as ``rewards``.
    """
    if scale not in ("none", "std"):
        raise InputError(f"scale must be 'none' or 'std', got {scale!r}")
    if not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise InputError(f"group_size must be a positive int, got {group_size!r}")
    n = rewards.shape[0]
    if rewards.ndim != 1:
        raise InputError(f"rewards must be 1-d (B,), got shape {tuple(rewards.shape)}")
    if n % group_size != 0:
        raise InputError(f"group_size={group_size} does not divide the batch of {n} rewards")
    if _is_torch(rewards):
        import torch

        if not torch.isfinite(rewards).all():
            raise InputError("rewards contain NaN or inf")
        grouped = rewards.view(-1, group_size)  # (n_prompts, G)
        adv = grouped - grouped.mean(dim=1, keepdim=True)
        if scale == "std":
            std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(adv)
            adv = adv / (std + eps)
        return adv.reshape(-1)
    rewards = np.asarray(rewards)
    if not np.all(np.isfinite(rewards)):
        bad = int(np.flatnonzero(~np.isfinite(rewards))[0])
        raise InputError(f"rewards[{bad}] is {rewards[bad]}: rewards must be finite")
    grouped = rewards.reshape(-1, group_size)  # (n_prompts, G)
    adv = grouped - grouped.mean(axis=1, keepdims=True)
    if scale == "std":
        std = grouped.std(axis=1, ddof=1, keepdims=True) if group_size > 1 else np.zeros_like(adv)
        adv = adv / (std + eps)
    return adv.reshape(-1)


# ---------------------------------------------------------------------------------------------
# Discounted returns, TD errors and GAE (lecture §6.2-§7.1).
#
# Shared convention (Gymnasium's terminated/truncated):
#   * arrays are time-major, shape (T,) for one stream or (T, N) for N parallel envs;
#   * row t is the transition (s_t, a_t, r_t, s_{t+1}): ``r_t[t]`` is the reward r_{t+1} received
#     after acting in s_t, ``v_t[t]`` = V(s_t);
#   * ``terminated[t]``: s_{t+1} is terminal, V(s_{t+1}) := 0 (no bootstrap);
#   * ``truncated[t]``: the episode was cut after this step (time limit); s_{t+1} is NOT terminal,
#     so we bootstrap from V(s_{t+1}), the value of the TRUE final observation (Gymnasium's
#     ``final_obs``), never from the reset observation that follows;
#   * ``v_tp1`` / ``bootstrap`` is either full shape (T, ...) with v_tp1[t] = V(s_{t+1}) of the
#     true next observation of row t (entries at terminated steps are ignored), or batch shape
#     (...) = V(s_T), the value after the last row, in which case v_tp1 = [v_t[1:], bootstrap]
#     (this is only right if no row is truncated: a truncated row must bootstrap from its own
#     final observation, so it needs the full-shape form — otherwise a ValueError is raised);
#   * the recursion never crosses a row that is terminated or truncated (the next row belongs
#     to a new episode); the last row bootstraps from v_tp1[T-1] unless terminated;
#   * if both flags are set (possible in Gymnasium), termination wins;
#   * every row must be a real transition: with Gymnasium ≥ 1.0 vector envs in the default
#     NEXT_STEP autoreset mode, drop the reset rows (reward 0, action ignored) before calling.
#   * ``discount_t`` is γ (a float) or a per-row array γ_t (rlax style, e.g. γ·(1 − terminated)).
# numpy in -> numpy out, torch in -> torch out (same dtype/device as ``r_t``).
# ---------------------------------------------------------------------------------------------


def _np(x):
    """A numpy view of an array-like (torch tensors are detached and moved to CPU)."""
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_rows(name: str, x, shape: tuple) -> None:
    if x is not None and tuple(x.shape) != shape:
        raise InputError(f"{name} must have the shape of r_t {shape}, got {tuple(x.shape)}")


def _check_unit(name: str, x) -> None:
    if isinstance(x, (int, float, np.floating, np.integer)) and not 0.0 <= float(x) <= 1.0:
        raise InputError(f"{name} must be in [0, 1], got {x!r}")


def _flags(x, shape):
    """terminated/truncated as a float mask of ``shape`` (0 where None)."""
    if x is None:
        return np.zeros(shape)
    return _np(x).astype(bool).astype(np.float64)


def _next_values(name, v_tp1, v_t, shape, truncated):
    """Full-shape V(s_{t+1}) from ``v_tp1`` given in full shape (T, ...) or batch shape (...)."""
    if v_tp1 is None:
        return np.zeros(shape)
    v_tp1 = _np(v_tp1).astype(np.float64)
    if v_tp1.shape == shape:
        return v_tp1
    if v_tp1.shape != shape[1:]:
        raise InputError(
            f"{name} must have shape {shape} (V of each row's next observation) or {shape[1:]} "
            f"(V(s_T) after the last row), got {v_tp1.shape}"
        )
    if truncated is not None and _flags(truncated, shape)[:-1].any():
        t = int(np.argwhere(_flags(truncated, shape)[:-1])[0][0])
        raise InputError(
            f"row {t} is truncated: pass {name} with full shape {shape} holding V of the true final "
            "observation at truncated rows (bootstrapping from the reset observation would be wrong)"
        )
    out = np.empty(shape)
    if v_t is None:  # discounted_returns: only the last row bootstraps
        out[:-1] = 0.0
    else:
        out[:-1] = _np(v_t)[1:]
    out[-1] = v_tp1
    return out


def _backward_scan(x_t: np.ndarray, c_t: np.ndarray) -> np.ndarray:
    """y_t = x_t + c_t · y_{t+1},  y_T = 0.  One loop over T, vectorized over the batch."""
    y = np.empty_like(x_t)
    acc = np.zeros_like(x_t[0])
    for t in range(x_t.shape[0] - 1, -1, -1):
        acc = x_t[t] + c_t[t] * acc
        y[t] = acc
    return y


def _backward_scan_torch(x_t, c_t):
    """Differentiable twin of ``_backward_scan`` (used only when an input requires grad)."""
    import torch

    c_t = c_t.expand(x_t.shape)
    rows, acc = [], torch.zeros_like(x_t[0])
    for t in range(x_t.shape[0] - 1, -1, -1):
        acc = x_t[t] + c_t[t] * acc
        rows.append(acc)
    return torch.stack(rows[::-1])


def _out(y: np.ndarray, like):
    """Return ``y`` in the library, dtype and device of ``like``."""
    if _is_torch(like):
        import torch

        dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
        return torch.from_numpy(np.ascontiguousarray(y)).to(device=like.device, dtype=dtype)
    dtype = like.dtype if np.issubdtype(np.asarray(like).dtype, np.floating) else np.float64
    return y.astype(dtype, copy=False)


def _needs_grad(*xs) -> bool:
    return any(_is_torch(x) and x.requires_grad for x in xs if x is not None)


def _torch_of(x, like):
    import torch

    if x is None:
        return torch.zeros((), dtype=like.dtype, device=like.device)
    if _is_torch(x):
        return x.to(like.dtype)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=like.dtype, device=like.device)


def _shape_of(r_t) -> tuple:
    shape = tuple(r_t.shape)
    if len(shape) not in (1, 2) or shape[0] == 0:
        raise InputError(f"r_t must have shape (T,) or (T, N) with T ≥ 1, got {shape}")
    return shape


def discounted_returns(r_t, discount_t, bootstrap=None, *, terminated=None, truncated=None):
    """Discounted return G_t, computed backwards (lecture §3, §6.2; Sutton & Barto eq. 3.9).

        G_t = r_{t+1} + γ_t · G_{t+1}                      (inside an episode)
        G_t = r_{t+1}                                     (terminated[t]: V(terminal) = 0)
        G_t = r_{t+1} + γ_t · V(s_{t+1})                  (truncated[t], or t = T−1 not terminated)

    so G_t = Σ_{k=t}^{T−1} γ^{k−t} r_{k+1} for a complete episode. ``r_t[t]`` is r_{t+1}, the reward
    after action a_t. Args, shapes (T,) or (T, N) time-major (see the module convention above):
      r_t: rewards.  discount_t: γ (float) or per-row γ_t.
      bootstrap: None (= 0), V(s_T) with the batch shape (), (N,), or the full shape (T, ...) holding
        V of each row's true next observation (read only at truncated rows and the last row).
      terminated, truncated: bool arrays (None = all False).
    Returns G of the shape of r_t. Monte Carlo REINFORCE uses bootstrap=None on whole episodes.
    """
    shape = _shape_of(r_t)
    _check_rows("terminated", terminated, shape)
    _check_rows("truncated", truncated, shape)
    _check_unit("discount_t", discount_t)
    if _needs_grad(r_t, bootstrap):
        import torch

        g = _torch_of(discount_t, r_t)
        term, trunc = _torch_of(terminated, r_t), _torch_of(truncated, r_t)
        if bootstrap is None:
            v_tp1 = torch.zeros_like(r_t)
        elif tuple(bootstrap.shape) == shape:
            v_tp1 = bootstrap
        else:
            _next_values("bootstrap", _np(bootstrap), None, shape, truncated)  # shape checks
            v_tp1 = torch.cat([torch.zeros_like(r_t[:-1]), bootstrap.reshape(1, *shape[1:])])
        cut = trunc.expand(shape).clone()
        cut[-1] = 1.0  # (T, ...) rows whose successor is read from v_tp1
        live = g * (1.0 - term)
        return _backward_scan_torch(r_t + live * cut * v_tp1, live * (1.0 - cut))
    r = _np(r_t).astype(np.float64)
    g = np.broadcast_to(_np(discount_t).astype(np.float64), shape)
    term, trunc = _flags(terminated, shape), _flags(truncated, shape)
    v_tp1 = _next_values("bootstrap", bootstrap, None, shape, truncated)  # (T, ...)
    cut = trunc.copy()
    cut[-1] = 1.0
    live = g * (1.0 - term)  # (T, ...) discount of the successor, 0 after termination
    return _out(_backward_scan(r + live * cut * v_tp1, live * (1.0 - cut)), r_t)


def _delta(r_t, discount_t, terminated, v_tp1, v_t):
    """δ_t = r_{t+1} + γ_t (1 − terminated_t) V(s_{t+1}) − V(s_t), elementwise (numpy or torch):
    the one place the TD error is written (:func:`td_errors`, :func:`gae`)."""
    return r_t + discount_t * (1.0 - terminated) * v_tp1 - v_t


def td_errors(r_t, discount_t, v_t, v_tp1, *, terminated=None, truncated=None):
    """One-step TD error, the actor-critic advantage estimate (lecture §6.3; Sutton 1988).

        δ_t = r_{t+1} + γ_t · (1 − terminated_t) · V(s_{t+1}) − V(s_t)

    A truncated row bootstraps like a live one (from V of its true final observation). Args (T,) or
    (T, N): r_t rewards, discount_t γ or γ_t, v_t = V(s_t), v_tp1 = V(s_{t+1}) full shape or the
    batch-shape V(s_T) (then v_tp1 = [v_t[1:], V(s_T)]; ``truncated`` is only used to reject that
    form when a row is truncated). Returns δ of the shape of r_t.
    """
    shape = _shape_of(r_t)
    _check_rows("v_t", v_t, shape)
    _check_rows("terminated", terminated, shape)
    _check_rows("truncated", truncated, shape)
    _check_unit("discount_t", discount_t)
    if _needs_grad(r_t, v_t, v_tp1):
        import torch

        g, term = _torch_of(discount_t, v_t), _torch_of(terminated, v_t)
        if tuple(v_tp1.shape) != shape:
            _next_values("v_tp1", _np(v_tp1), _np(v_t), shape, truncated)  # shape checks
            v_tp1 = torch.cat([v_t[1:], v_tp1.reshape(1, *shape[1:])])
        return _delta(r_t, g, term, v_tp1, v_t)
    g = np.broadcast_to(_np(discount_t).astype(np.float64), shape)
    term = _flags(terminated, shape)
    nv = _next_values("v_tp1", v_tp1, v_t, shape, truncated)  # (T, ...)
    return _out(_delta(_np(r_t), g, term, nv, _np(v_t)), r_t)


def gae(r_t, discount_t, v_t, v_tp1, lambda_=0.95, *, terminated=None, truncated=None):
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16), the advantage of PPO/A2C.

        δ_t = r_{t+1} + γ_t · (1 − terminated_t) · V(s_{t+1}) − V(s_t)
        Â_t = Σ_{l≥0} (γλ)^l δ_{t+l}  =  δ_t + γ_t λ (1 − done_t) Â_{t+1},   done_t = terminated_t ∨ truncated_t

    The sum stops at the end of the episode (done) and of the rollout (Â_T = 0). Special cases:
    λ = 1 gives Monte Carlo (Â_t = G_t − V(s_t), bootstrapped at truncation and at the rollout end),
    λ = 0 gives TD(0) (Â_t = δ_t). The λ-return target for the critic is Â_t + V(s_t).
    Args (T,) or (T, N) time-major: r_t, discount_t (γ or γ_t), v_t = V(s_t), v_tp1 = V(s_{t+1})
    full shape (true final observation at truncated rows) or batch-shape V(s_T); lambda_ in [0, 1];
    terminated, truncated bool arrays. One backward loop over T, vectorized over N; torch inputs
    that do not require grad are computed in numpy (fast) and returned as torch.
    """
    shape = _shape_of(r_t)
    _check_rows("v_t", v_t, shape)
    _check_rows("terminated", terminated, shape)
    _check_rows("truncated", truncated, shape)
    _check_unit("discount_t", discount_t)
    _check_unit("lambda_", lambda_)
    if _needs_grad(r_t, v_t, v_tp1):
        delta = td_errors(r_t, discount_t, v_t, v_tp1, terminated=terminated, truncated=truncated)
        g, lam = _torch_of(discount_t, delta), _torch_of(lambda_, delta)
        done = (_torch_of(terminated, delta) + _torch_of(truncated, delta)).clamp(max=1.0)
        return _backward_scan_torch(delta, g * lam * (1.0 - done))
    g = np.broadcast_to(_np(discount_t).astype(np.float64), shape)
    term, trunc = _flags(terminated, shape), _flags(truncated, shape)
    nv = _next_values("v_tp1", v_tp1, v_t, shape, truncated)  # (T, ...)
    delta = _delta(_np(r_t), g, term, nv, _np(v_t))  # (T, ...)
    keep = g * _np(lambda_) * (1.0 - np.maximum(term, trunc))  # (T, ...) γλ(1 − done)
    return _out(_backward_scan(delta, keep), r_t)



def n_step_returns(r_t, discount_t, v_tp1, n: int, *, terminated=None, truncated=None):
    """n-step bootstrapped return, the target of n-step Q-learning / DQN (Sutton & Barto eq. 7.1):

        G_t^(n) = Σ_{k=0}^{m−1} (Π_{j<k} γ_{t+j}) r_{t+k+1}  +  (Π_{j<m} γ_{t+j}) (1 − terminated_{t+m−1}) V(s_{t+m})

    where m ≤ n stops early at the end of the episode or of the array: m − 1 is the first k < n
    with terminated_{t+k}, truncated_{t+k} or t+k = T−1. As in :func:`gae`, termination does not
    bootstrap (V(terminal) = 0) and truncation does, from ``v_tp1`` of the true final observation.
    n = 1 is the one-step target r + γ_t(1 − term)V(s_{t+1}); n ≥ T on whole episodes with
    v_tp1 = 0 gives :func:`discounted_returns`. Args (T,) or (T, N) time-major: r_t, discount_t
    (γ or γ_t), v_tp1 FULL shape (T, ...) with v_tp1[t] = V(s_{t+1}) of row t's true next
    observation (for DQN: max_a Q⁻(s_{t+1}, a)), n ≥ 1, terminated/truncated bool arrays.
    Returns G^(n) of the shape of r_t (numpy in → numpy out, torch in → torch out; no autograd).
    """
    shape = _shape_of(r_t)
    _check_rows("v_tp1", v_tp1, shape)
    _check_rows("terminated", terminated, shape)
    _check_rows("truncated", truncated, shape)
    _check_unit("discount_t", discount_t)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n must be an int ≥ 1, got {n!r}")
    T = shape[0]
    r = _np(r_t).astype(np.float64)
    g = np.broadcast_to(_np(discount_t).astype(np.float64), shape)
    v = _np(v_tp1).astype(np.float64)
    term, trunc = _flags(terminated, shape), _flags(truncated, shape)
    stop_here = np.maximum(term, trunc)  # (T, ...) the episode ends after row j
    stop_here[-1] = 1.0  # the array ends after row T−1
    out = np.zeros(shape)
    scale = np.ones(shape)  # Π_{j<k} γ_{t+j}, row t
    active = np.ones(shape)  # 1 while the n-step window of row t has not stopped
    rows = np.arange(T)
    for k in range(min(n, T)):
        j = np.minimum(rows + k, T - 1)  # (T,) row read at offset k (clamped where inactive)
        out += active * scale * r[j]
        scale = scale * g[j]
        stop = np.maximum(stop_here[j], float(k == n - 1))  # (T, ...) window ends after row j
        out += active * stop * scale * (1.0 - term[j]) * v[j]
        active = active * (1.0 - stop)
    return _out(out, r_t)
