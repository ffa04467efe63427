"""Analytic derivatives of the losses with respect to their inputs (numpy).

Each function ``<loss>_grad`` is ∂L/∂x of the loss ``<loss>`` in ``policylab.losses.policy_gradient``
(the equation lives there; ``tests/test_analytic_grads.py`` checks every derivative against
torch autograd, clip boundaries and ties included). They exist for PPO's numpy backend
(``policylab.deep.fast``), which back-propagates ``ppo_loss_grad`` through numpy MLPs instead of
running autograd — on CartPole-sized nets torch's per-op overhead dominates the arithmetic.
``DERIVATIVES`` maps a composed loss to its derivative: the fast path runs a loss only if it is there.

Conventions match the losses: arrays of one shape, reductions are means over all B elements,
so every derivative carries a 1/B. Where torch's ``minimum``/``maximum`` see a tie they split the
gradient evenly between both branches; ``clamp`` passes the gradient on its closed interval.
These functions follow the same rules on the same rounded values, so the numbers agree to float
rounding (ties caused by rounding included).
"""

from __future__ import annotations

import numpy as np

from policylab.losses.policy_gradient import ppo_loss

__all__ = ["DERIVATIVES", "cql_regularizer_grad", "dqn_loss_grad", "entropy_bonus_grad", "ppo_clip_loss_grad", "ppo_loss_grad",
           "sac_actor_loss_grad", "sac_critic_loss_grad", "sac_temperature_loss_grad", "tanh_gaussian_log_prob_grad",
           "value_loss_grad"]


def ppo_clip_loss_grad(logp: np.ndarray, old_logp: np.ndarray, advantages: np.ndarray,
                       clip_eps: float) -> np.ndarray:
    """∂L/∂logp_t of ``ppo_clip_loss``, L = −mean_t min(ρ_t Â_t, clip(ρ_t, 1−ε, 1+ε) Â_t):

        ∂L/∂logp_t = −ρ_t Â_t / B   unless the clip binds,
                   = 0             where it binds: ρ_t > 1+ε with Â_t > 0, or ρ_t < 1−ε with Â_t < 0

    (∂ρ/∂logp = ρ.) The branch is chosen as torch chooses it, from the two rounded products: where
    they tie (inside the clip range, or at ρ = 1±ε) each passes half of its own gradient, and the
    clipped branch passes one only on the closed interval [1−ε, 1+ε]. Returns an array shaped like ``logp``.
    """
    ratio = np.exp(logp - old_logp)
    unclipped, clipped = ratio * advantages, np.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    w = np.where(unclipped < clipped, 1.0, np.where(unclipped > clipped, 0.0, 0.5))  # share of the ρÂ branch
    inside = (ratio >= 1.0 - clip_eps) & (ratio <= 1.0 + clip_eps)
    return (-(w + (1.0 - w) * inside) * advantages * ratio / logp.size).astype(logp.dtype, copy=False)


def value_loss_grad(values: np.ndarray, returns: np.ndarray, old_values: np.ndarray | None = None,
                    clip_eps: float | None = None) -> np.ndarray:
    """∂L/∂V_t of ``value_loss``:

        L = ½ mean (V − R)²                  ⇒  ∂L/∂V_t = (V_t − R_t) / B
        L = ½ mean max(d₁², d₂²), clipped    ⇒  ∂L/∂V_t = (w_t d₁ + (1 − w_t) d₂ 𝟙[|V_t − V_old,t| ≤ ε]) / B

    with d₁ = V − R, d₂ = V_old + clip(V − V_old, −ε, ε) − R and w_t = 1 where d₁² > d₂², 0 where
    d₁² < d₂², ½ on a tie (torch's ``maximum`` rule).
    """
    d1 = values - returns
    if clip_eps is None:
        return d1 / values.size
    diff = values - old_values
    d2 = old_values + np.clip(diff, -clip_eps, clip_eps) - returns
    sq1, sq2 = d1 * d1, d2 * d2
    w = np.where(sq1 > sq2, 1.0, np.where(sq1 < sq2, 0.0, 0.5)).astype(values.dtype)
    inside = np.abs(diff) <= clip_eps
    return (w * d1 + (1.0 - w) * d2 * inside) / values.size


def entropy_bonus_grad(entropy: np.ndarray) -> np.ndarray:
    """∂L/∂H_t of ``entropy_bonus``, L = −mean H:  ∂L/∂H_t = −1/B."""
    return np.full_like(entropy, -1.0 / entropy.size)


def ppo_loss_grad(logp, entropy, values, old_logp, advantages, returns, *, clip_eps: float = 0.2,
                  vf_coef: float = 1.0, ent_coef: float = 0.0, old_values=None, clip_eps_vf: float | None = None):
    """(∂L/∂log π (B,), ∂L/∂H (B,), ∂L/∂V (B,)) of ``ppo_loss`` (same arguments), L = L_clip + c_v L_V + c_H L_H:

        ∂L/∂log π = ∂L_clip/∂log π,    ∂L/∂H = c_H ∂L_H/∂H = −c_H / B,    ∂L/∂V = c_v ∂L_V/∂V
    """
    g_logp = ppo_clip_loss_grad(logp, old_logp, advantages, clip_eps)
    g_entropy = ent_coef * entropy_bonus_grad(entropy)
    g_values = vf_coef * value_loss_grad(values, returns, None if clip_eps_vf is None else old_values, clip_eps_vf)
    return g_logp, g_entropy, g_values


def dqn_loss_grad(q_tm1_a: np.ndarray, target: np.ndarray, kind: str = "huber") -> np.ndarray:
    """∂L/∂Q(s_b, a_b) of ``losses.value_based.dqn_loss`` on δ = Q − y (y a constant):

        huber:  ∂L/∂Q_b = clip(δ_b, −1, 1) / B          mse:  ∂L/∂Q_b = 2δ_b / B

    (torch's ``smooth_l1_loss`` passes ±1 at |δ| = 1, as the clip does.) Shaped like ``q_tm1_a``.
    """
    d = q_tm1_a - target
    g = np.clip(d, -1.0, 1.0) if kind == "huber" else 2.0 * d
    return (g / d.size).astype(q_tm1_a.dtype, copy=False)


def cql_regularizer_grad(q_tm1: np.ndarray, a_tm1: np.ndarray) -> np.ndarray:
    """∂R/∂Q(s_b, ·) of ``losses.value_based.cql_regularizer``, R = mean_b [logsumexp_a Q_b − Q_b,a_b]:

        ∂R/∂Q_b,a = (softmax(Q_b)_a − 1[a = a_b]) / B          (B, A), like ``q_tm1``
    """
    e = np.exp(q_tm1 - q_tm1.max(axis=1, keepdims=True))
    g = e / e.sum(axis=1, keepdims=True)  # (B, A) softmax
    g[np.arange(len(g)), a_tm1] -= 1.0
    return (g / len(g)).astype(q_tm1.dtype, copy=False)


def tanh_gaussian_log_prob_grad(mean: np.ndarray, log_std: np.ndarray, u: np.ndarray):
    """Partial derivatives (∂/∂μ, ∂/∂log σ, ∂/∂u), each (B, d), of ``losses.value_based.tanh_gaussian_log_prob``
    log π = Σ_i [−½ z_i² − log σ_i − ½ log 2π − log(1 − tanh² u_i)],  z = (u − μ)/σ:

        ∂log π/∂μ = z/σ,     ∂log π/∂log σ = z² − 1,     ∂log π/∂u = −z/σ + 2 tanh u

    (d/du log(1 − tanh² u) = −2 tanh u.) u, μ, log σ independent, as autograd sees them; with the
    reparameterization u = μ + σε the totals are d/dμ = 2 tanh u, d/dlog σ = 2σε tanh u − 1.
    """
    std = np.exp(log_std)
    z = (u - mean) / std
    return z / std, z * z - 1.0, -z / std + 2.0 * np.tanh(u)


def sac_critic_loss_grad(q_tm1, target: np.ndarray) -> list[np.ndarray]:
    """∂J_Q/∂Q_φᵢ(s_b, a_b) of ``losses.value_based.sac_critic_loss``, J_Q = ½ Σ_i mean_b (Q_φᵢ − y)²:

        ∂J_Q/∂Q_φᵢ,b = (Q_φᵢ,b − y_b) / B          (y constant), one (B,) array per critic
    """
    return [(q - target) / q.size for q in q_tm1]


def sac_actor_loss_grad(logp: np.ndarray, q_min: np.ndarray, alpha):
    """(∂J_π/∂log π (B,), ∂J_π/∂min_i Q (B,)) of ``losses.value_based.sac_actor_loss``,
    J_π = mean_b [α log π_b − min_i Q_φᵢ,b]:

        ∂J_π/∂log π_b = α / B,     ∂J_π/∂min_i Q_b = −1 / B

    (the min passes its gradient to the critic that attains it; the caller routes it.)
    """
    n = logp.size
    return np.full_like(logp, alpha / n), np.full_like(q_min, -1.0 / n)


def sac_temperature_loss_grad(log_alpha, logp: np.ndarray, target_entropy: float):
    """∂J/∂log α of ``losses.value_based.sac_temperature_loss``, J(α) = −mean_b [log α (log π_b + H̄)]:

        ∂J/∂log α = −mean_b (log π_b + H̄)          (a scalar of log π's dtype)
    """
    c = logp.dtype.type
    return -(logp + c(target_entropy)).sum() / c(logp.size)


#: composed loss → its derivative with respect to the network outputs (logp, entropy, values)
DERIVATIVES = {ppo_loss: ppo_loss_grad}
