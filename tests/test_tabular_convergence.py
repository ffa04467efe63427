"""Tabular learners converge to the planning solution (value iteration Q*, exact V^π).

Tolerances are max-norm over the non-terminal states (and all actions for Q). Runs are seeded,
so every number here is deterministic; the `slow` versions run ~10–50× longer with tighter
tolerances (`pytest -m slow tests/test_tabular_convergence.py`).
"""

import gymnasium as gym
import numpy as np
import pytest

from policylab import planning, tabular
from policylab.mdp import catalog, from_gymnasium


def _q_err(mdp, Q, Q_star):
    return np.abs(Q - Q_star)[~mdp.terminal].max()


def _v_err(mdp, V, V_ref):
    return np.abs(V - V_ref)[~mdp.terminal].max()


def _eps_greedy_of(mdp, policy, eps):
    pi = np.full((mdp.n_states, mdp.n_actions), eps / mdp.n_actions)  # (S, A)
    pi[np.arange(mdp.n_states), policy] += 1.0 - eps
    return pi


@pytest.fixture(scope="module")
def line_world():
    mdp = catalog.line_world(n_states=5, gamma=0.9)
    return mdp, planning.value_iteration(mdp, tol=1e-12)


@pytest.fixture(scope="module")
def frozen_lake():
    mdp = catalog.get("frozen-lake")  # slippery 4×4, γ = 0.99
    return mdp, planning.value_iteration(mdp, tol=1e-12)


@pytest.fixture(scope="module")
def frozen_lake_09():
    mdp = catalog.get("frozen-lake", gamma=0.9)
    return mdp, planning.value_iteration(mdp, tol=1e-12)


# ---------------------------------------------------------------------------- line world
@pytest.mark.parametrize("learner", [tabular.q_learning, tabular.expected_sarsa])
def test_off_policy_or_expected_learners_solve_line_world(line_world, learner):
    """Deterministic MDP: constant α, enough steps, Q-learning hits Q* to round-off."""
    mdp, plan = line_world
    res = learner(mdp, 50_000, 0.5, 0.5 if learner is tabular.q_learning else
                  tabular.inverse_count(0.5))
    tol = 1e-9 if learner is tabular.q_learning else 0.02
    assert _q_err(mdp, res.Q, plan.Q) < tol
    np.testing.assert_array_equal(res.policy[:-1], plan.policy[:-1])


def test_sarsa_glie_reaches_q_star_on_line_world(line_world):
    """SARSA with GLIE ε = 1/√N(s) and α = 1/N(s,a)^0.6: Q → Q* (tolerance 0.02 after 20k steps)."""
    mdp, plan = line_world
    res = tabular.sarsa(mdp, 20_000, tabular.inverse_count(0.6), tabular.inverse_count(0.5))
    assert _q_err(mdp, res.Q, plan.Q) < 0.02
    np.testing.assert_array_equal(res.policy[:-1], plan.policy[:-1])


def test_mc_and_td0_reach_exact_v_pi_on_line_world(line_world):
    mdp, _ = line_world
    pi = np.full((mdp.n_states, 2), 0.5)
    V_pi = planning.evaluate_policy(mdp, pi, method="exact")
    mc = tabular.mc_prediction(mdp, pi, 20_000, seed=1)
    td = tabular.td0_prediction(mdp, pi, 500_000, tabular.inverse_count(0.6), seed=1)
    assert _v_err(mdp, mc.V, V_pi) < 0.01
    assert _v_err(mdp, td.V, V_pi) < 0.01


# ---------------------------------------------------------------------------- FrozenLake 4×4
def test_q_learning_reaches_q_star_on_frozen_lake(frozen_lake):
    """Off-policy: uniform behaviour (ε = 1), α = 1/N(s,a)^0.6, 2M steps: |Q − Q*|∞ < 0.05."""
    mdp, plan = frozen_lake
    res = tabular.q_learning(mdp, 2_000_000, tabular.inverse_count(0.6), 1.0)
    assert _q_err(mdp, res.Q, plan.Q) < 0.05
    gap = (plan.V - plan.Q[np.arange(mdp.n_states), res.policy])[~mdp.terminal]
    assert gap.max() < 1e-3  # greedy policy optimal (Q* has exact ties at states 0 and 6)


@pytest.mark.slow
def test_q_learning_reaches_q_star_on_frozen_lake_long(frozen_lake):
    mdp, plan = frozen_lake
    res = tabular.q_learning(mdp, 100_000_000, tabular.inverse_count(0.6), 1.0)
    assert _q_err(mdp, res.Q, plan.Q) < 0.01


def test_sarsa_glie_reaches_q_star_on_frozen_lake(frozen_lake_09):
    """On-policy with GLIE ε = 1/√N(s), α = 1/N(s,a)^0.6 on slippery FrozenLake, γ = 0.9:
    2M steps give |V − V*|∞ < 0.02, |Q − Q*|∞ < 0.1 and an optimal greedy policy.

    (At γ = 0.99 SARSA's decaying exploration starves the upper-right states long before
    their values settle; Q-learning is the method for that case, see the test above.)"""
    mdp, plan = frozen_lake_09
    res = tabular.sarsa(mdp, 2_000_000, tabular.inverse_count(0.6), tabular.inverse_count(0.5))
    assert _v_err(mdp, res.V, plan.V) < 0.02
    assert _q_err(mdp, res.Q, plan.Q) < 0.1
    gap = (plan.V - plan.Q[np.arange(mdp.n_states), res.policy])[~mdp.terminal]
    assert gap.max() < 1e-3


@pytest.mark.slow
def test_sarsa_glie_reaches_q_star_on_frozen_lake_long(frozen_lake_09):
    mdp, plan = frozen_lake_09
    res = tabular.sarsa(mdp, 20_000_000, tabular.inverse_count(0.6), tabular.inverse_count(0.5))
    assert _v_err(mdp, res.V, plan.V) < 0.01
    assert _q_err(mdp, res.Q, plan.Q) < 0.05


@pytest.mark.parametrize("first_visit", [True, False])
def test_mc_reaches_exact_v_pi_on_frozen_lake(frozen_lake, first_visit):
    """MC (sample mean, 20k episodes) of the 0.1-greedy policy of Q*: |V − V^π|∞ < 0.02."""
    mdp, plan = frozen_lake
    pi = _eps_greedy_of(mdp, plan.policy, 0.1)
    V_pi = planning.evaluate_policy(mdp, pi, method="exact")
    res = tabular.mc_prediction(mdp, pi, 20_000, first_visit=first_visit)
    assert _v_err(mdp, res.V, V_pi) < 0.02


def test_td0_reaches_exact_v_pi_on_frozen_lake(frozen_lake):
    """TD(0), α = 1/N(s)^0.6, 2M steps, same policy: |V − V^π|∞ < 0.03."""
    mdp, plan = frozen_lake
    pi = _eps_greedy_of(mdp, plan.policy, 0.1)
    V_pi = planning.evaluate_policy(mdp, pi, method="exact")
    res = tabular.td0_prediction(mdp, pi, 2_000_000, tabular.inverse_count(0.6))
    assert _v_err(mdp, res.V, V_pi) < 0.03


@pytest.mark.slow
def test_mc_and_td0_reach_exact_v_pi_on_frozen_lake_long(frozen_lake):
    mdp, plan = frozen_lake
    pi = _eps_greedy_of(mdp, plan.policy, 0.1)
    V_pi = planning.evaluate_policy(mdp, pi, method="exact")
    assert _v_err(mdp, tabular.mc_prediction(mdp, pi, 1_000_000).V, V_pi) < 0.003
    td = tabular.td0_prediction(mdp, pi, 50_000_000, tabular.inverse_count(0.6))
    assert _v_err(mdp, td.V, V_pi) < 0.01


# ---------------------------------------------------------------------------- gymnasium env path
def test_q_learning_on_gymnasium_env_solves_deterministic_frozen_lake():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    mdp = from_gymnasium(env, gamma=0.9)
    plan = planning.value_iteration(mdp, tol=1e-12)
    res = tabular.q_learning(env, 30_000, 1.0, 1.0, gamma=0.9, seed=0)
    assert res.backend == "python"
    reachable = res.visits.sum(axis=1) > 0
    assert np.abs(res.Q - plan.Q)[reachable & ~mdp.terminal].max() < 1e-9


@pytest.mark.slow
def test_q_learning_on_gymnasium_slippery_frozen_lake(frozen_lake):
    mdp, plan = frozen_lake
    res = tabular.q_learning(gym.make("FrozenLake-v1"), 2_000_000, tabular.inverse_count(0.6), 1.0,
                             gamma=0.99)
    assert _q_err(mdp, res.Q, plan.Q) < 0.06


# ---------------------------------------------------------------------------- cliff walking
def _greedy_path(mdp, policy, start, limit=60):
    indptr, nxt, _, _ = mdp.transitions()  # deterministic: one successor per row
    s, path = start, [start]
    while not mdp.terminal[s] and len(path) < limit:
        s = int(nxt[indptr[s * mdp.n_actions + policy[s]]])
        path.append(s)
    return path


def test_cliff_walking_sarsa_safe_path_q_learning_cliff_edge():
    """Sutton & Barto Example 6.6 (α = 0.5, ε = 0.1, γ = 1): Q-learning's greedy path runs
    along the cliff edge (row 2, 13 moves); SARSA's keeps away from it, and SARSA earns the
    higher online return because ε-greedy steps off the edge cost −100."""
    mdp = catalog.get("cliff-walking")
    start = int(np.flatnonzero(mdp.initial)[0])
    ql = tabular.q_learning(mdp, 100_000, 0.5, 0.1, seed=0)
    sa = tabular.sarsa(mdp, 100_000, 0.5, 0.1, seed=0)
    ql_path, sa_path = _greedy_path(mdp, ql.policy, start), _greedy_path(mdp, sa.policy, start)
    assert mdp.terminal[ql_path[-1]] and mdp.terminal[sa_path[-1]]
    ql_rows = [s // 12 for s in ql_path[1:-1]]
    sa_rows = [s // 12 for s in sa_path[1:-1]]
    assert len(ql_path) - 1 == 13 and set(ql_rows) == {2}  # the optimal, cliff-edge path
    assert len(sa_path) - 1 > 13 and min(sa_rows) <= 1      # detour away from the edge
    middle = [s // 12 for s in sa_path if 3 <= s % 12 <= 8]
    assert max(middle) <= 1                                  # never on the edge mid-way
    assert sa.episode_returns[-500:].mean() > ql.episode_returns[-500:].mean()
