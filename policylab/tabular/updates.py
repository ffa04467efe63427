"""The tabular learning equations, one pure function each (lecture §6, Sutton & Barto ch. 5–6).

Every function is ``numba.njit(cache=True)``: the compiled kernels inline them and the
plain-Python path calls the very same functions, so the math lives here only.

Indexing follows rlax: a transition is (s_tm1, a_tm1, r_t, discount_t, s_t): the agent
acted a_tm1 in s_tm1, received r_t and landed in s_t. In the lecture's notation that is
(s_t, a_t, r_{t+1}, s_{t+1}). ``discount_t`` already folds in termination:
γ_t = γ·(1 − terminated_t), see :func:`bootstrap_discount`.
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
def td_target(r_t, discount_t, v_t):
    """TD(0) target: y = r_{t+1} + γ_t V(s_{t+1})."""
    return r_t + discount_t * v_t


@numba.njit(cache=True, inline="always")
def q_learning_target(r_t, discount_t, q_t):
    """Q-learning target (Watkins 1989): y = r_{t+1} + γ_t max_a' Q(s_{t+1}, a').

    ``q_t`` is the (A,) row Q(s_{t+1}, ·).
    """
    best = q_t[0]
    for a in range(1, q_t.shape[0]):
        best = max(best, q_t[a])
    return r_t + discount_t * best


@numba.njit(cache=True, inline="always")
def sarsa_target(r_t, discount_t, q_t, a_t):
    """SARSA target (Rummery & Niranjan 1994): y = r_{t+1} + γ_t Q(s_{t+1}, a_{t+1}).

    ``q_t`` is the (A,) row Q(s_{t+1}, ·); ``a_t`` the action the behaviour policy picked there.
    """
    return r_t + discount_t * q_t[a_t]


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
def expected_sarsa_target(r_t, discount_t, q_t, epsilon_t):
    """Expected SARSA target (van Seijen et al. 2009) for an ε-greedy policy:

        y = r_{t+1} + γ_t Σ_a' π_ε(a'|s_{t+1}) Q(s_{t+1}, a')
    """
    return r_t + discount_t * epsilon_greedy_expectation(q_t, epsilon_t)


@numba.njit(cache=True, inline="always")
def td_error(target, estimate):
    """Temporal-difference error: δ_t = y_t − Q(s_t, a_t)  (or y_t − V(s_t));
    for Monte Carlo the target is the return, δ_t = G_t − V(s_t)."""
    return target - estimate


@numba.njit(cache=True, inline="always")
def incremental_update(estimate, alpha, delta):
    """Stochastic-approximation step: Q(s_t, a_t) ← Q(s_t, a_t) + α δ_t.

    With α = 1/N(s) and δ = G − V(s) this is the running sample mean of Monte Carlo.
    """
    return estimate + alpha * delta


@numba.njit(cache=True, inline="always")
def return_step(r_t, discount_t, g_t):
    """One backward step of the discounted return: G_{t−1} = r_t + γ_t G_t (G_T = 0)."""
    return r_t + discount_t * g_t
