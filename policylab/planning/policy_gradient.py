"""The exact policy gradient of a tabular softmax policy, from the model (lecture §6.2).

This is what REINFORCE and actor-critic estimate from samples; with the model known it is a
linear solve. ``tests/test_policy_gradient_estimator.py`` checks it against finite differences of
J and against the mean of many REINFORCE estimates (with and without a baseline).
"""

from __future__ import annotations

import numpy as np

from policylab.errors import InputError
from policylab.planning.bellman import policy_model, q_from_v
from policylab.planning.evaluation import evaluate_policy

__all__ = ["discounted_visitation", "exact_policy_gradient", "softmax_policy"]


def softmax_policy(logits: np.ndarray) -> np.ndarray:
    """Tabular softmax policy π_θ(a|s) = exp θ_{s,a} / Σ_b exp θ_{s,b};  logits (S, A) → (S, A)."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def discounted_visitation(mdp, pi: np.ndarray) -> np.ndarray:
    """Unnormalized discounted state visitation of π from the initial distribution μ₀:

        d^π(s) = Σ_t γ^t Pr(s_t = s | s_0 ~ μ₀, π),   i.e.   d = μ₀ + γ P_πᵀ d   on non-terminal states

    (0 on terminal states). Σ_s d^π(s) = E[episode length, discounted]; pi (S, A) → d (S,).
    """
    _, P_pi = policy_model(mdp, pi)  # (S, S)
    live = np.flatnonzero(~mdp.terminal)
    P_live = P_pi[live][:, live]
    P_live = P_live.toarray() if hasattr(P_live, "toarray") else P_live
    d = np.zeros(mdp.n_states)
    d[live] = np.linalg.solve(np.eye(live.size) - mdp.gamma * P_live.T, mdp.initial[live])
    return d


def exact_policy_gradient(mdp, logits: np.ndarray) -> np.ndarray:
    """∇_θ J of a tabular softmax policy (policy gradient theorem, lecture §6.2):

        J(θ) = Σ_s μ₀(s) V^π(s) = E[G_0]
        ∇J   = Σ_s d^π(s) Σ_a ∇_θ π_θ(a|s) Q^π(s,a)
        ∂J/∂θ_{s,b} = d^π(s) · π(b|s) · (Q^π(s,b) − V^π(s))   (softmax: ∂π(a|s)/∂θ_{s,b} = π(a|s)(1[a=b] − π(b|s)))

    d^π from :func:`discounted_visitation`; V^π, Q^π from ``evaluate_policy`` / ``q_from_v``.
    logits (S, A) → (S, A).
    """
    logits = np.asarray(logits, dtype=np.float64)
    S, A = mdp.n_states, mdp.n_actions
    if logits.shape != (S, A):
        raise InputError(f"logits must have shape (S, A) = ({S}, {A}), got {logits.shape}")
    if not np.all(np.isfinite(logits)):
        raise InputError("logits must be finite")
    pi = softmax_policy(logits)  # (S, A)
    V = evaluate_policy(mdp, pi)  # (S,)
    Q = q_from_v(mdp, V)  # (S, A)
    return discounted_visitation(mdp, pi)[:, None] * pi * (Q - V[:, None])  # (S, A)
