"""Policy-gradient losses (lecture §6.2-§7.1): pure torch functions returning a scalar to MINIMIZE.

Conventions: every argument is a tensor of one shape (any shape: (B,), (T, N), ...), elementwise
aligned; ``logp`` = log π_θ(a|s) of the taken actions, with the graph to θ; advantages, returns and
TD errors are treated as constants (detached inside the loss), so each loss differentiates exactly
the term its equation names. Reductions are means over all elements.

A PPO update composes them (coefficients from the algorithm's config):

    loss = (ppo_clip_loss(logp, old_logp, adv, clip_eps)
            + vf_coef * value_loss(values, returns, old_values, clip_eps_vf)
            + ent_coef * entropy_bonus(entropy))

and logs ``approx_kl(logp, old_logp)`` and ``clip_fraction(logp, old_logp, clip_eps)``.
"""

from __future__ import annotations

import numbers

import torch

from policylab.errors import InputError
from policylab.losses.kl import kl_k1, kl_k3

__all__ = [
    "actor_critic_loss",
    "approx_kl",
    "clip_fraction",
    "entropy_bonus",
    "ppo_clip_loss",
    "reinforce_loss",
    "value_loss",
]


def _same_shape(**xs: torch.Tensor | None) -> None:
    items = [(k, v) for k, v in xs.items() if v is not None]
    name0, x0 = items[0]
    for name, x in items[1:]:
        if tuple(x.shape) != tuple(x0.shape):
            raise InputError(f"{name} has shape {tuple(x.shape)} but {name0} has {tuple(x0.shape)}")
    if x0.numel() == 0:
        raise InputError(f"{name0} is empty")


def _positive(name: str, x: float) -> None:
    if isinstance(x, bool) or not (isinstance(x, numbers.Real) and 0.0 < float(x) < float("inf")):
        raise InputError(f"{name} must be a finite positive number, got {x!r}")


def reinforce_loss(logp: torch.Tensor, returns: torch.Tensor, baseline=None) -> torch.Tensor:
    """REINFORCE with an optional baseline (Williams 1992; lecture §6.2):

        L(θ) = −mean_t[ log π_θ(a_t|s_t) · (G_t − b(s_t)) ]   ⇒   −∇L = mean_t ∇log π_θ(a_t|s_t)(G_t − b(s_t))

    ``returns`` G_t and ``baseline`` b(s_t) (tensor or None = 0) are detached: the baseline is a
    constant here (train a learned baseline with ``value_loss``). For the unbiased gradient of the
    discounted objective J = E[G_0], pass γ^t·G_t (weight step t by γ^t); plain G_t gives the
    common "undiscounted state distribution" variant. Padded steps: pass a return of 0.
    """
    _same_shape(logp=logp, returns=returns, baseline=baseline)
    weight = returns if baseline is None else returns - baseline
    return -(logp * weight.detach()).mean()


def actor_critic_loss(
    logp: torch.Tensor, td_error: torch.Tensor, values: torch.Tensor, value_coef: float = 1.0
) -> torch.Tensor:
    """One-step actor-critic (lecture §6.3): δ_t is the advantage for the actor and the error of the critic.

        L(θ, w) = −mean[ log π_θ(a_t|s_t) · δ_t ]  +  value_coef · ½ mean[ (y_t − V_w(s_t))² ],
        y_t = V_w(s_t) + δ_t = r_{t+1} + γ V_w(s_{t+1})   (held constant: semi-gradient TD)

    −∇_w L = value_coef · δ_t ∇_w V_w(s_t) and −∇_θ L = δ_t ∇_θ log π_θ(a_t|s_t): SGD on L with step
    sizes α_w, α_θ is exactly the lecture's critic step w ← w + α_w δ ∇V and actor step
    θ ← θ + α_θ δ ∇log π. ``td_error`` is detached; ``values`` = V_w(s_t) carries the critic graph.
    """
    _same_shape(logp=logp, td_error=td_error, values=values)
    delta = td_error.detach()
    target = values.detach() + delta
    return -(logp * delta).mean() + value_coef * 0.5 * (target - values).pow(2).mean()


def ppo_clip_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip_eps: float = 0.2
) -> torch.Tensor:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7; lecture §7.1), negated to minimize:

        ρ_t = π_θ(a_t|s_t) / π_θold(a_t|s_t) = exp(logp − old_logp)
        L(θ) = −mean_t[ min( ρ_t Â_t , clip(ρ_t, 1−ε, 1+ε) Â_t ) ]

    Where the clip binds (ρ > 1+ε with Â > 0, or ρ < 1−ε with Â < 0) the term is constant in θ and
    its gradient is exactly 0. ``old_logp`` and ``advantages`` are detached. Normalize advantages
    before calling if your algorithm does (PPO's default); diagnostics: ``approx_kl``, ``clip_fraction``.
    """
    _same_shape(logp=logp, old_logp=old_logp, advantages=advantages)
    _positive("clip_eps", clip_eps)
    adv = advantages.detach()
    ratio = torch.exp(logp - old_logp.detach())
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
    return -surrogate.mean()


def value_loss(
    values: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip_eps: float | None = None,
) -> torch.Tensor:
    """Critic regression to return targets, optionally clipped around the old values (PPO2 / CleanRL):

        L(w) = ½ mean[ (V_w(s_t) − R_t)² ]                                             (clip_eps=None)
        L(w) = ½ mean[ max( (V_w − R_t)², (V_old + clip(V_w − V_old, −ε, ε) − R_t)² ) ]   (clipped)

    The ½ makes −∇L = (R_t − V_w)∇V_w, the TD/MC critic step of the lecture. ``returns`` (e.g. the
    GAE λ-return Â_t + V(s_t)) and ``old_values`` are detached. Clipping needs both old_values and clip_eps.
    """
    _same_shape(values=values, returns=returns, old_values=old_values)
    target = returns.detach()
    sq = (values - target).pow(2)
    if (old_values is None) != (clip_eps is None):
        raise InputError("value clipping needs both old_values and clip_eps (or neither)")
    if clip_eps is not None:
        _positive("clip_eps", clip_eps)
        old = old_values.detach()
        clipped = old + torch.clamp(values - old, -clip_eps, clip_eps)
        sq = torch.maximum(sq, (clipped - target).pow(2))
    return 0.5 * sq.mean()


def entropy_bonus(entropy: torch.Tensor) -> torch.Tensor:
    """Entropy regularizer as a term to minimize (Mnih et al. 2016): L_H = −mean[ H(π_θ(·|s_t)) ].

    Add ``ent_coef * entropy_bonus(H)`` to the loss to reward exploration; ``entropy`` is per state.
    """
    _same_shape(entropy=entropy)
    return -entropy.mean()


_KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}


def approx_kl(logp: torch.Tensor, old_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Sample estimate of KL(π_θold ‖ π_θ) on actions drawn from π_θold (Schulman 2020), no grad:

        k3 = mean[ (ρ − 1) − log ρ ],  ρ = exp(logp − old_logp)    (≥ 0, low variance; CleanRL/SB3)
        k1 = mean[ old_logp − logp ]                                 (unbiased, may be negative)

    Reuses ``kl_k3(p, q)``/``kl_k1(p, q)`` of ``policylab.losses.kl`` with p = π_θold (the sampler).
    Used for logging and PPO's target-KL early stop. Returns a 0-d tensor.
    """
    _same_shape(logp=logp, old_logp=old_logp)
    if estimator not in _KL_ESTIMATORS:
        raise InputError(f"estimator must be one of {sorted(_KL_ESTIMATORS)}, got {estimator!r}")
    with torch.no_grad():
        return _KL_ESTIMATORS[estimator](old_logp, logp).mean()


def clip_fraction(logp: torch.Tensor, old_logp: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """Fraction of samples whose ratio lies outside the clip range: mean[ |ρ_t − 1| > ε ] (no grad)."""
    _same_shape(logp=logp, old_logp=old_logp)
    _positive("clip_eps", clip_eps)
    with torch.no_grad():
        return ((torch.exp(logp - old_logp) - 1.0).abs() > clip_eps).float().mean()
