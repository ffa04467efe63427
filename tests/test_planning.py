"""Planning against independent references: linear solves, published tables, closed forms."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab import InvalidMDPError, planning
from policylab.mdp import TabularMDP, catalog


def reference_v(mdp, pi):
    """Independent V^π: the full linear Bellman system with numpy, all states included."""
    P = mdp.P if not mdp.is_sparse else mdp.P.toarray().reshape(mdp.n_states, mdp.n_actions, -1)
    pi = planning.policy_matrix(mdp, pi)
    P_pi = np.einsum("sa,sat->st", pi, P)
    r_pi = np.einsum("sa,sa->s", pi, mdp.expected_reward)
    return np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * P_pi, r_pi)


# Sutton & Barto (2018), figure 3.2 (random policy) and figure 3.5 (optimal), gamma = 0.9.
SB_RANDOM = np.array([
    [3.3, 8.8, 4.4, 5.3, 1.5],
    [1.5, 3.0, 2.3, 1.9, 0.5],
    [0.1, 0.7, 0.7, 0.4, -0.4],
    [-1.0, -0.4, -0.4, -0.6, -1.2],
    [-1.9, -1.3, -1.2, -1.4, -2.0],
])
SB_OPTIMAL = np.array([
    [22.0, 24.4, 22.0, 19.4, 17.5],
    [19.8, 22.0, 19.8, 17.8, 16.0],
    [17.8, 19.8, 17.8, 16.0, 14.4],
    [16.0, 17.8, 16.0, 14.4, 13.0],
    [14.4, 16.0, 14.4, 13.0, 11.7],
])


@pytest.mark.parametrize("method", ["exact", "iterative"])
def test_sutton_barto_gridworld_random_policy(method):
    mdp = catalog.gridworld_5x5()
    V = planning.evaluate_policy(mdp, np.full((25, 4), 0.25), method=method)
    np.testing.assert_array_equal(np.round(V, 1).reshape(5, 5), SB_RANDOM)


@pytest.mark.parametrize("solve", [planning.value_iteration, planning.policy_iteration,
                                   planning.modified_policy_iteration])
def test_sutton_barto_gridworld_optimal(solve):
    res = solve(catalog.gridworld_5x5())
    np.testing.assert_array_equal(np.round(res.V, 1).reshape(5, 5), SB_OPTIMAL)
    assert res.converged


def test_line_world_gamma_zero_closed_form():
    Q = planning.value_iteration(catalog.line_world(gamma=0.0)).Q
    expected = np.zeros((4, 2))
    expected[2, 1] = 1.0  # only "right" from s3 is rewarded immediately
    np.testing.assert_array_equal(Q, expected)


@settings(max_examples=30, deadline=None)
@given(gamma=st.floats(0.01, 0.99), n=st.integers(1, 8))
def test_line_world_closed_form(gamma, n):
    # By hand: from s_i, going right reaches G after n−i+1 steps, the reward arriving on the
    # last one, so Q*(s_i, right) = γ^(n−i). Going left first costs one step back (two net
    # steps): Q*(s_i, left) = γ·V*(s_{i−1}) = γ^(n−i+2); from s1 left stays: Q*(s1, left) = γ·V*(s1) = γ^n.
    res = planning.value_iteration(catalog.line_world(n_states=n, gamma=gamma), tol=1e-12)
    i = np.arange(1, n + 1)
    right = gamma ** (n - i)
    left = np.where(i > 1, gamma ** (n - i + 2.0), gamma ** float(n))
    np.testing.assert_allclose(res.Q[:n, 1], right, atol=1e-11)
    np.testing.assert_allclose(res.Q[:n, 0], left, atol=1e-11)
    np.testing.assert_array_equal(res.Q[n], 0.0)
    # π* = right wherever the gap is resolvable at this tolerance (γ^(n−i) can be ~1e-16)
    clear = right - left > 1e-9
    assert np.all(res.policy[:n][clear] == 1)


def test_evaluate_policy_matches_linear_system(rng):
    mdp = catalog.garnet(40, 3, 5, seed=2, gamma=0.95)
    pi = rng.dirichlet(np.ones(3), size=40)
    ref = reference_v(mdp, pi)
    np.testing.assert_allclose(planning.evaluate_policy(mdp, pi), ref, atol=1e-10)
    np.testing.assert_allclose(planning.evaluate_policy(mdp, pi, method="iterative", tol=1e-9), ref, atol=1e-9)
    det = rng.integers(0, 3, size=40)
    np.testing.assert_allclose(planning.evaluate_policy(mdp, det), reference_v(mdp, det), atol=1e-10)


def test_bellman_backups_fixed_points():
    mdp = catalog.garnet(30, 4, 3, seed=5, gamma=0.9)
    res = planning.value_iteration(mdp, tol=1e-12)
    np.testing.assert_allclose(planning.bellman_optimality_backup(mdp, res.V), res.V, atol=1e-11)
    np.testing.assert_allclose(planning.bellman_optimality_backup_q(mdp, res.Q), res.Q, atol=1e-11)
    Vpi = planning.evaluate_policy(mdp, res.policy)
    np.testing.assert_allclose(planning.bellman_expectation_backup(mdp, Vpi, res.policy), Vpi, atol=1e-11)


@settings(max_examples=25, deadline=None)
@given(S=st.integers(2, 25), A=st.integers(1, 4), b=st.integers(1, 4), seed=st.integers(0, 10_000),
       gamma=st.floats(0.0, 0.98))
def test_value_iteration_agrees_with_policy_iteration(S, A, b, seed, gamma):
    mdp = catalog.garnet(S, A, min(b, S), seed=seed, gamma=gamma)
    vi = planning.value_iteration(mdp, tol=1e-9)
    pi = planning.policy_iteration(mdp)
    assert np.max(np.abs(vi.V - pi.V)) <= 1e-9 * (1 + np.abs(pi.V).max())
    # PI's policy is optimal: its exact value equals V*, and VI's greedy policy is just as good
    np.testing.assert_allclose(reference_v(mdp, pi.policy), pi.V, atol=1e-8)
    np.testing.assert_allclose(reference_v(mdp, vi.policy), pi.V, atol=1e-6)


@pytest.mark.parametrize("bounds", [True, False])
def test_value_iteration_stopping_bound_holds(bounds):
    mdp = catalog.garnet(300, 4, 5, seed=11, gamma=0.99)
    v_star = planning.policy_iteration(mdp).V
    for tol in (1e-2, 1e-4, 1e-7):
        res = planning.value_iteration(mdp, tol=tol, bounds=bounds)
        assert res.residual <= tol
        assert np.max(np.abs(res.V - v_star)) <= tol
        assert len(res.history) == res.iterations


def test_value_iteration_sparse_equals_dense():
    dense = catalog.garnet(500, 3, 4, seed=4, sparse=False)
    sparse = TabularMDP(sp.csr_array(dense.P.reshape(1500, 500)), dense.R, dense.gamma)
    a, b = planning.value_iteration(dense, tol=1e-10), planning.value_iteration(sparse, tol=1e-10)
    np.testing.assert_allclose(a.V, b.V, atol=1e-12)
    np.testing.assert_array_equal(a.policy, b.policy)
    np.testing.assert_allclose(planning.policy_iteration(sparse).V, a.V, atol=1e-9)


def test_frozen_lake_two_methods_and_monte_carlo():
    mdp = catalog.get("frozen-lake", gamma=0.99)
    vi = planning.value_iteration(mdp, tol=1e-10)
    pi = planning.policy_iteration(mdp)
    np.testing.assert_allclose(vi.V, pi.V, atol=1e-9)
    np.testing.assert_allclose(planning.evaluate_policy(mdp, pi.policy), pi.V, atol=1e-10)
    # A third, sampling-based check of V*(start): roll out π* in gymnasium's own env.
    import gymnasium as gym

    env = gym.make("FrozenLake-v1")
    rng_returns = []
    for ep in range(3000):
        s, _ = env.reset(seed=ep)
        g, disc, done = 0.0, 1.0, False
        while not done:
            s, r, term, trunc, _ = env.step(int(pi.policy[s]))
            g += disc * r
            disc *= 0.99
            done = term or trunc
        rng_returns.append(g)
    # gymnasium truncates at 100 steps, which can only lower the sampled return slightly
    m, se = np.mean(rng_returns), np.std(rng_returns) / np.sqrt(len(rng_returns))
    assert m <= pi.V[0] + 4 * se and m >= pi.V[0] - 4 * se - 0.05


def test_forest_policy_matches_pymdptoolbox():
    example = pytest.importorskip("mdptoolbox.example")
    mdp_module = pytest.importorskip("mdptoolbox.mdp")

    P, R = example.forest(S=10, r1=4, r2=2, p=0.1)
    peer = mdp_module.PolicyIteration(P, R, 0.9)
    peer.run()
    ours = planning.policy_iteration(catalog.forest(S=10, gamma=0.9))
    np.testing.assert_array_equal(ours.policy, np.asarray(peer.policy))
    np.testing.assert_allclose(ours.V, np.asarray(peer.V), atol=1e-8)


def test_gamma_one_cliff_walking():
    mdp = catalog.get("cliff-walking")  # gamma = 1, terminal goal
    vi, pi = planning.value_iteration(mdp), planning.policy_iteration(mdp)
    assert vi.V[36] == pytest.approx(-13.0) and pi.V[36] == pytest.approx(-13.0)
    # the shortest path along the cliff edge: up, then 11 × right, then down
    assert mdp.action_names[pi.policy[36]] == "up"


def test_gamma_one_singular_system_explains_why():
    mdp = catalog.get("cliff-walking")
    always_up = np.zeros(mdp.n_states, dtype=int)
    with pytest.raises(InvalidMDPError, match=r"state '0,0' \(index 0\) never reaches a terminal state"):
        planning.evaluate_policy(mdp, always_up)
    with pytest.raises(InvalidMDPError, match="gamma = 1 needs terminal states"):
        planning.value_iteration(catalog.gridworld_5x5(gamma=1.0))


PLANNING_BAD = [
    (lambda m: planning.evaluate_policy(m, np.zeros(3, dtype=int)), r"shape \(4,\)"),
    (lambda m: planning.evaluate_policy(m, np.array([0, 1, 2, 0])), r"policy\[2\] = 2 is not an action index"),
    (lambda m: planning.evaluate_policy(m, np.full((4, 2), 0.7)), r"policy row 0 sums to 1\.4"),
    (lambda m: planning.evaluate_policy(m, np.full((4, 2), np.nan)), r"policy\[0, 0\] = nan"),
    (lambda m: planning.evaluate_policy(m, np.zeros(4, dtype=int), method="magic"), r"method must be"),
    (lambda m: planning.value_iteration(m, tol=-1.0), r"tol must be a positive finite number"),
    (lambda m: planning.value_iteration(m, max_iter=0), r"max_iter must be >= 1"),
    (lambda m: planning.q_from_v(m, np.zeros(3)), r"V must have shape \(4,\)"),
    (lambda m: planning.modified_policy_iteration(m, m=-1), r"m must be >= 0"),
]


@pytest.mark.parametrize("call,pattern", PLANNING_BAD)
def test_planning_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(catalog.line_world())
