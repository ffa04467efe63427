"""The tabular learning equations, one pure function each (lecture §6, Sutton & Barto ch. 5–6).

Every function is ``numba.njit(cache=True)``: the compiled kernels inline them and the
plain-Python path calls the very same functions, so the math lives here only.

Indexing is the one of :mod:`policylab.returns`: a transition is (s_t, a_t, r_t, s_{t+1}),
where ``r_t`` is the reward r_{t+1} received after acting a_t in s_t; ``v_t`` = V(s_t),
``v_tp1`` = V(s_{t+1}), ``q_tp1`` = Q(s_{t+1}, ·). ``discount_t`` already folds in
termination: γ_t = γ·(1 − terminated_t), see :func:`bootstrap_discount`.
"""

from __future__ import annotations

import numba

__all__ = [
    "bootstrap_discount",
    "epsilon_greedy_expectation",
    "expected_sarsa_target",
    "incremental_update",
    "q_learning_target",
    "return_step",
    "sarsa_target",
    "td_error",
    "td_target",
]


@numba.njit(cache=True, inline="always")
def bootstrap_discount(gamma, terminated):
    """Discount applied to the bootstrap value: γ_t = γ · (1 − terminated_t).

    Gymnasium semantics: a *terminated* transition enters a terminal state whose value is
    0 by definition, so it does not bootstrap (γ_t = 0). A *truncated* transition (time
    limit) ended for reasons outside the MDP, so it still bootstraps (γ_t = γ).
    """
    return 0.0 if terminated else gamma


@numba.njit(cache=True, inline="always")
def td_target(r_t, discount_t, v_tp1):
    """TD(0) target: y_t = r_{t+1} + γ_t V(s_{t+1})."""
    return r_t + discount_t * v_tp1


@numba.njit(cache=True, inline="always")
def q_learning_target(r_t, discount_t, q_tp1):
    """Q-learning target (Watkins 1989): y_t = r_{t+1} + γ_t max_a' Q(s_{t+1}, a').

    ``q_tp1`` is the (A,) row Q(s_{t+1}, ·).
    """
    best = q_tp1[0]
    for a in range(1, q_tp1.shape[0]):
        best = max(best, q_tp1[a])
    return r_t + discount_t * best


@numba.njit(cache=True, inline="always")
def sarsa_target(r_t, discount_t, q_tp1, a_tp1):
    """SARSA target (Rummery & Niranjan 1994): y_t = r_{t+1} + γ_t Q(s_{t+1}, a_{t+1}).

    ``q_tp1`` is the (A,) row Q(s_{t+1}, ·); ``a_tp1`` the action the behaviour policy picked there.
    """
    return r_t + discount_t * q_tp1[a_tp1]


@numba.njit(cache=True, inline="always")
def epsilon_greedy_expectation(q_t, epsilon):
    """E_{a∼π_ε}[Q(s, a)] = (1 − ε) max_a Q(s, a) + ε · (1/A) Σ_a Q(s, a).

    π_ε is ε-greedy with ties broken uniformly: every tied maximum has the value max_a Q,
    so the expectation does not depend on how ties are broken.
    """
    best = q_t[0]
    total = 0.0
    for a in range(q_t.shape[0]):
        total += q_t[a]
        best = max(best, q_t[a])
    return (1.0 - epsilon) * best + epsilon * total / q_t.shape[0]


@numba.njit(cache=True, inline="always")
def expected_sarsa_target(r_t, discount_t, q_tp1, epsilon_tp1):
    """Expected SARSA target (van Seijen et al. 2009) for an ε-greedy policy:

        y_t = r_{t+1} + γ_t Σ_a' π_ε(a'|s_{t+1}) Q(s_{t+1}, a'),   ε = ``epsilon_tp1`` at s_{t+1}
    """
    return r_t + discount_t * epsilon_greedy_expectation(q_tp1, epsilon_tp1)


@numba.njit(cache=True, inline="always")
def td_error(target_t, v_t):
    """Temporal-difference error: δ_t = y_t − V(s_t)  (or y_t − Q(s_t, a_t)); with the TD(0)
    target this is :func:`policylab.returns.td_errors`' δ_t = r_{t+1} + γ_t V(s_{t+1}) − V(s_t);
    for Monte Carlo the target is the return, δ_t = G_t − V(s_t)."""
    return target_t - v_t


@numba.njit(cache=True, inline="always")
def incremental_update(v_t, alpha, delta_t):
    """Stochastic-approximation step: V(s_t) ← V(s_t) + α δ_t  (or Q(s_t, a_t)).

    With α = 1/N(s) and δ = G − V(s) this is the running sample mean of Monte Carlo.
    """
    return v_t + alpha * delta_t


@numba.njit(cache=True, inline="always")
def return_step(r_t, discount_t, g_tp1):
    """One backward step of the discounted return: G_t = r_{t+1} + γ_t G_{t+1} (G_T = 0),
    as in :func:`policylab.returns.discounted_returns`."""
    return r_t + discount_t * g_tp1
