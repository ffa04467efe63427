"""Policy-gradient losses (lecture §6.2-§7.1): pure functions returning a scalar to MINIMIZE.

Conventions: every argument is a tensor of one shape (any shape: (B,), (T, N), ...), elementwise
aligned; ``logp`` = log π_θ(a|s) of the taken actions, with the graph to θ; advantages, returns and
TD errors are treated as constants (detached inside the loss), so each loss differentiates exactly
the term its equation names. Reductions are means over all elements.

PPO's terms (``ppo_clip_loss``, ``value_loss``, ``entropy_bonus``) and their composition
``ppo_loss`` also take numpy arrays (and then return numpy scalars): PPO's numpy backend logs the
same function whose derivative it follows (``policylab.losses.grads.ppo_loss_grad``, tested
against autograd of this one). ``ppo_loss`` returns the total and its terms:

    L = ppo_clip_loss(logp, old_logp, adv, ε) + c_v · value_loss(V, R, V_old, ε_v) + c_H · entropy_bonus(H)

Diagnostics every algorithm logs (``approx_kl``, ``clip_fraction``, ``explained_variance``) live in
``policylab.losses.diagnostics``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import torch

from policylab.errors import InputError
from policylab.losses._xp import namespace

__all__ = [
    "PPOLoss",
    "actor_critic_loss",
    "entropy_bonus",
    "ppo_clip_loss",
    "ppo_loss",
    "reinforce_loss",
    "value_loss",
]


def _same_shape(**xs) -> None:
    items = [(k, v) for k, v in xs.items() if v is not None]
    name0, x0 = items[0]
    for name, x in items[1:]:
        if tuple(x.shape) != tuple(x0.shape):
            raise InputError(f"{name} has shape {tuple(x.shape)} but {name0} has {tuple(x0.shape)}")
    if math.prod(x0.shape) == 0:
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
    xp = namespace(logp)
    adv = xp.detach(advantages)
    ratio = xp.exp(logp - xp.detach(old_logp))
    surrogate = xp.minimum(ratio * adv, xp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
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
    xp = namespace(values)
    target = xp.detach(returns)
    d = values - target
    sq = d * d
    if (old_values is None) != (clip_eps is None):
        raise InputError("value clipping needs both old_values and clip_eps (or neither)")
    if clip_eps is not None:
        _positive("clip_eps", clip_eps)
        old = xp.detach(old_values)
        d_clipped = old + xp.clip(values - old, -clip_eps, clip_eps) - target
        sq = xp.maximum(sq, d_clipped * d_clipped)
    return 0.5 * sq.mean()


def entropy_bonus(entropy: torch.Tensor) -> torch.Tensor:
    """Entropy regularizer as a term to minimize (Mnih et al. 2016): L_H = −mean[ H(π_θ(·|s_t)) ].

    Add ``ent_coef * entropy_bonus(H)`` to the loss to reward exploration; ``entropy`` is per state.
    """
    _same_shape(entropy=entropy)
    return -entropy.mean()


class PPOLoss(NamedTuple):
    """:func:`ppo_loss`'s total and terms (0-d tensors or numpy scalars, like its inputs)."""

    total: Any    #: L = L_clip + c_v · L_V + c_H · L_H, the quantity minimized
    policy: Any   #: L_clip, the negated clipped surrogate
    value: Any    #: L_V = ½ mean (V − R)² (clipped or not)
    entropy: Any  #: L_H = −mean H


def ppo_loss(logp, entropy, values, old_logp, advantages, returns, *, clip_eps: float = 0.2,
             vf_coef: float = 1.0, ent_coef: float = 0.0, old_values=None,
             clip_eps_vf: float | None = None) -> PPOLoss:
    """PPO's whole minibatch loss (Schulman et al. 2017, eq. 9, negated to minimize):

        L(θ, w) = L_clip(θ) + c_v · L_V(w) + c_H · L_H(θ)

    with ``ppo_clip_loss`` (ε = ``clip_eps``), ``value_loss`` (clipped around ``old_values`` when
    ``clip_eps_vf`` is set; ``old_values`` is used only then) and ``entropy_bonus``. The first three
    arguments are the network's outputs on the minibatch — log π_θ(a|s) (B,), H(π_θ(·|s)) (B,),
    V_w(s) (B,) — the rest are constants. Tensors or numpy arrays; its derivative with respect to
    the three outputs is ``policylab.losses.grads.ppo_loss_grad`` (same arguments).
    """
    policy = ppo_clip_loss(logp, old_logp, advantages, clip_eps)
    value = value_loss(values, returns, None if clip_eps_vf is None else old_values, clip_eps_vf)
    ent = entropy_bonus(entropy)
    total = policy + vf_coef * value
    return PPOLoss(total + ent_coef * ent if ent_coef else total, policy, value, ent)  # c_H = 0: no H graph
