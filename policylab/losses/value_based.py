"""Value-based and soft actor-critic math (DQN, double DQN, SAC): pure functions of torch tensors
(the DQN and SAC targets and losses also of numpy arrays, for the numpy backends
``deep.fast.qlearning`` and ``deep.fast.sac``; their derivatives are in ``losses.grads``).

Time-indexed names follow rlax: a transition is (s_tm1, a_tm1, r_t, discount_t, s_t), i.e. the
lecture's (s_t, a_t, r_{t+1}, s_{t+1}). ``discount_t`` already folds in termination and the n-step
horizon: γ_t = γ^m · (1 − terminated) for an m-step transition (see ``returns.n_step_returns``), so
a terminated transition does not bootstrap and a truncated one does.

Targets are returned detached (they are constants of the regression); losses return a scalar to
MINIMIZE (means over the batch). A DQN step composes

    y = double_q_learning_target(r_t, discount_t, q_target(s_t), q_online(s_t))   # or q_learning_target
    loss = dqn_loss(q_online(s_tm1)[a_tm1], y, kind="huber")
         + α · cql_regularizer(q_online(s_tm1), a_tm1)       # conservative Q-learning (offline)

and a SAC step (Haarnoja et al. 2018)

    y = soft_q_target(r_t, discount_t, min(Q'_1, Q'_2)(s_t, ã_t), log π(ã_t|s_t), α)
    sac_critic_loss([Q_1(s, a), Q_2(s, a)], y);  sac_actor_loss(log π(ã|s), min_i Q_i(s, ã), α)
    sac_temperature_loss(log α, log π(ã|s), target_entropy);  polyak_update(target, online, τ)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from policylab.errors import InputError
from policylab.losses.policy_gradient import _positive, _same_shape

__all__ = [
    "cql_regularizer",
    "double_q_learning_target",
    "dqn_loss",
    "polyak_update",
    "q_learning_target",
    "sac_actor_loss",
    "sac_critic_loss",
    "sac_temperature_loss",
    "soft_q_target",
    "tanh_gaussian_log_prob",
]


def _q_rows(q_t: torch.Tensor, r_t: torch.Tensor, name: str) -> None:
    if q_t.ndim != 2 or q_t.shape[0] != r_t.shape[0] or r_t.ndim != 1:
        raise InputError(f"{name} must have shape (B, A) with r_t of shape (B,), "
                         f"got {tuple(q_t.shape)} and {tuple(r_t.shape)}")


def _max_rows(q):
    return q.amax(dim=1) if torch.is_tensor(q) else q.max(axis=1)  # (B,)


def _pick(q, index):
    """q[b, index[b]] for each row b: (B, A), (B,) → (B,)."""
    if torch.is_tensor(q):
        return q.gather(1, index.long().unsqueeze(1)).squeeze(1)
    return q[np.arange(len(q)), index]


@torch.no_grad()
def q_learning_target(r_t: torch.Tensor, discount_t, q_t_target: torch.Tensor) -> torch.Tensor:
    """Q-learning target with a target network (Watkins 1989; Mnih et al. 2015):

        y = r_t + γ_t · max_a' Q_θ⁻(s_t, a')

    ``q_t_target`` (B, A) = Q_θ⁻(s_t, ·) from the target network, ``r_t`` (B,), ``discount_t``
    γ_t (B,) or a float. Returns y (B,), detached. Tensors or numpy arrays.
    """
    _q_rows(q_t_target, r_t, "q_t_target")
    return r_t + discount_t * _max_rows(q_t_target)


@torch.no_grad()
def double_q_learning_target(r_t: torch.Tensor, discount_t, q_t_target: torch.Tensor,
                             q_t_online: torch.Tensor) -> torch.Tensor:
    """Double-DQN target (van Hasselt et al. 2016): the online net picks, the target net rates.

        y = r_t + γ_t · Q_θ⁻(s_t, argmax_a' Q_θ(s_t, a'))

    Decoupling selection from evaluation removes the max's upward bias. Ties in argmax pick the
    lowest index. Shapes: ``q_t_target``, ``q_t_online`` (B, A); ``r_t`` (B,). Returns y (B,).
    Tensors or numpy arrays.
    """
    _q_rows(q_t_target, r_t, "q_t_target")
    _same_shape(q_t_target=q_t_target, q_t_online=q_t_online)
    return r_t + discount_t * _pick(q_t_target, q_t_online.argmax(1))


def dqn_loss(q_tm1_a: torch.Tensor, target: torch.Tensor, kind: str = "huber") -> torch.Tensor:
    """TD regression loss of DQN on δ = y − Q_θ(s, a) (``target`` y is detached):

        huber:  mean_b ℓ(δ_b),  ℓ(δ) = ½δ²  if |δ| ≤ 1,  |δ| − ½ otherwise   (Mnih et al. 2015; SB3)
        mse:    mean_b δ_b²                                                   (CleanRL)

    Huber's gradient is δ clipped to [−1, 1], which keeps rare large TD errors from blowing up.
    Tensors, or numpy arrays (then a float; the derivative is ``losses.grads.dqn_loss_grad``).
    """
    _same_shape(q_tm1_a=q_tm1_a, target=target)
    if kind not in ("huber", "mse"):
        raise InputError(f"kind must be 'huber' or 'mse', got {kind!r}")
    if not torch.is_tensor(q_tm1_a):
        d = np.abs(q_tm1_a - target)
        return float(np.mean(np.where(d <= 1.0, 0.5 * d * d, d - 0.5) if kind == "huber" else d * d))
    if kind == "huber":
        return F.smooth_l1_loss(q_tm1_a, target.detach())
    return F.mse_loss(q_tm1_a, target.detach())


def cql_regularizer(q_tm1: torch.Tensor, a_tm1: torch.Tensor) -> torch.Tensor:
    """Conservative Q-learning's regularizer, CQL(H) for discrete actions (Kumar et al. 2020, eq. 4):

        R(θ) = mean_b [ log Σ_a exp Q_θ(s_b, a) − Q_θ(s_b, a_b) ]

    Added as α·R to the TD loss, it pushes Q down on every action (softly, on the largest) and up
    on the action the dataset took, so actions the data never shows cannot look better than the
    logged ones — the fix for offline Q-learning's extrapolation error. R ≥ 0 (logsumexp ≥ max).
    ``q_tm1`` (B, A) = Q_θ(s, ·), ``a_tm1`` (B,) the logged actions. Tensors (autograd), or numpy
    arrays (then a float; ∂R/∂Q = (softmax Q − onehot a)/B is ``losses.grads.cql_regularizer_grad``).
    """
    _q_rows(q_tm1, a_tm1, "q_tm1")
    if torch.is_tensor(q_tm1):
        return (torch.logsumexp(q_tm1, dim=1) - _pick(q_tm1, a_tm1)).mean()
    m = q_tm1.max(axis=1)  # (B,) shift for a stable logsumexp
    lse = m + np.log(np.exp(q_tm1 - m[:, None]).sum(axis=1))
    return float(np.mean(lse - _pick(q_tm1, a_tm1)))


@torch.no_grad()
def soft_q_target(r_t: torch.Tensor, discount_t, q_t_target_min: torch.Tensor, logp_t: torch.Tensor,
                  alpha) -> torch.Tensor:
    """SAC's soft Bellman target (Haarnoja et al. 2018, eq. 3 with clipped double Q):

        y = r_t + γ_t · ( min_i Q_φ⁻ᵢ(s_t, ã_t) − α · log π(ã_t|s_t) ),   ã_t ∼ π(·|s_t)

    ``q_t_target_min`` (B,) = the minimum of the target critics at the sampled next action,
    ``logp_t`` (B,) its log-probability, ``alpha`` the temperature α (float or 0-d tensor).
    Tensors or numpy arrays.
    """
    _same_shape(r_t=r_t, q_t_target_min=q_t_target_min, logp_t=logp_t)
    return r_t + discount_t * (q_t_target_min - alpha * logp_t)


def sac_critic_loss(q_tm1: list[torch.Tensor] | tuple, target: torch.Tensor) -> torch.Tensor:
    """Twin soft-Q regression (Haarnoja et al. 2018, eq. 5; Fujimoto et al. 2018):

        J_Q = ½ Σ_i mean_b (Q_φᵢ(s_b, a_b) − y_b)²

    ``q_tm1`` is the list of critics' values Q_φᵢ(s, a), each (B,); ``target`` y (B,) is detached.
    Tensors, or numpy arrays (then a float; ∂J_Q/∂Q_φᵢ is ``losses.grads.sac_critic_loss_grad``).
    """
    if len(q_tm1) == 0:
        raise InputError("q_tm1 must hold at least one critic's values")
    for i, q in enumerate(q_tm1):
        _same_shape(target=target, **{f"q_tm1[{i}]": q})
    if not torch.is_tensor(target):  # mean of squares as a dot product: one C call, no np.mean frames
        return 0.5 * sum(float(d @ d) / d.size for d in (q - target for q in q_tm1))
    y = target.detach()
    return 0.5 * sum(F.mse_loss(q, y) for q in q_tm1)


def sac_actor_loss(logp: torch.Tensor, q_min: torch.Tensor, alpha) -> torch.Tensor:
    """SAC policy loss (Haarnoja et al. 2018, eq. 7, reparameterized ã = f_θ(ε; s)):

        J_π = mean_b [ α · log π_θ(ã_b|s_b) − min_i Q_φᵢ(s_b, ã_b) ]

    Both ``logp`` and ``q_min`` carry the graph to θ through ã; ``alpha`` is a constant here.
    Tensors, or numpy arrays (then a float; the derivative is ``losses.grads.sac_actor_loss_grad``).
    """
    _same_shape(logp=logp, q_min=q_min)
    if not torch.is_tensor(logp):
        return float((alpha * logp - q_min).sum()) / logp.size
    if torch.is_tensor(alpha):
        alpha = alpha.detach()
    return (alpha * logp - q_min).mean()


def sac_temperature_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """Automatic entropy tuning (Haarnoja et al. 2018b, eq. 18, in log α as SB3 does):

        J(α) = −mean_b [ log α · (log π(ã_b|s_b) + H̄) ]      (log π detached)

    ∂J/∂log α = −mean(log π + H̄) = H(π) − H̄ (estimated): α grows while the policy's entropy is
    below the target H̄ (SAC uses H̄ = −|A|) and shrinks above it. Tensors, or numpy arrays (then a
    float; the derivative is ``losses.grads.sac_temperature_loss_grad``).
    """
    if not math.isfinite(float(target_entropy)):
        raise InputError(f"target_entropy must be finite, got {target_entropy!r}")
    if not torch.is_tensor(logp):
        return -float((log_alpha * (logp + logp.dtype.type(target_entropy))).sum()) / logp.size
    return -(log_alpha * (logp.detach() + float(target_entropy))).mean()


@torch.no_grad()
def polyak_update(target_params, params, tau: float) -> None:
    """Soft target update (Lillicrap et al. 2016), in place on the target parameters:

        θ⁻ ← τ θ + (1 − τ) θ⁻

    τ = 1 copies the online parameters (DQN's hard update every ``target_update_interval``).
    """
    _positive("tau", tau)
    if tau > 1.0:
        raise InputError(f"tau must be in (0, 1], got {tau!r}")
    target_params, params = list(target_params), list(params)
    if len(target_params) != len(params):
        raise InputError(f"target has {len(target_params)} tensors but online has {len(params)}")
    if tau == 1.0:
        for t, p in zip(target_params, params):
            t.copy_(p)
        return
    torch._foreach_lerp_(target_params, params, float(tau))


_LOG2 = math.log(2.0)


def tanh_gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """log-density of a = tanh(u), u ∼ N(μ, diag σ²) (SAC's squashed Gaussian; Haarnoja 2018, App. C):

        log π(a|s) = Σ_i [ log N(u_i; μ_i, σ_i) − log(1 − tanh²(u_i)) ]
        log(1 − tanh²(u)) = 2 (log 2 − u − softplus(−2u))          (stable for large |u|)

    by the change of variables a = tanh(u), |da/du| = 1 − tanh²(u). Takes the PRE-squash sample
    ``u`` (inverting tanh near ±1 loses precision). Shapes (B, d) → (B,). An affine rescaling of a
    to the action box adds a constant and is omitted (as SB3 does). Tensors or numpy arrays (the
    partial derivatives are ``losses.grads.tanh_gaussian_log_prob_grad``).
    """
    _same_shape(mean=mean, u=u)
    if not torch.is_tensor(u):
        c = u.dtype.type  # constants in the arrays' precision (no float32 → float64 upcast)
        normal = -0.5 * np.square((u - mean) / np.exp(log_std)) - log_std - c(0.5 * math.log(2.0 * math.pi))
        x = -2.0 * u  # softplus(x) = max(x, 0) + log1p(e^−|x|): numpy's SIMD exp/log1p, ~5× faster than logaddexp
        log_det = 2.0 * (c(_LOG2) - u - (np.maximum(x, c(0.0)) + np.log1p(np.exp(-np.abs(x)))))
        return (normal - log_det) @ np.ones(u.shape[-1], u.dtype)  # Σ_i as a product: ~8× faster than .sum(-1)
    normal = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2.0 * math.pi)
    log_det = 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))
    return (normal - log_det).sum(dim=-1)
