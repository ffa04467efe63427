"""TabularMDP validation (bad inputs name the culprit), catalog, Gymnasium bridge."""

import gymnasium as gym
import numpy as np
import pytest
import scipy.sparse as sp
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab import InvalidMDPError
from policylab.mdp import TabularMDP, catalog, from_gymnasium


def two_state(**over):
    P = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    R = np.array([[0.0, 1.0], [0.0, 0.0]])
    kw = {"P": P, "R": R, "gamma": 0.9, "layout": "SAS"}  # A == S: the layout must be said
    kw.update(over)
    return kw


# ---------------------------------------------------------------- bad inputs (>= 15 cases)
def _bad_P(val, where=(0, 1, 1)):
    P = two_state()["P"].copy()
    P[where] = val
    return P


BAD = [
    ("row sum", {"P": _bad_P(0.5)}, r"P\(\.\|s=0, a=1\) sums to 0\.5"),
    ("negative prob", {"P": _bad_P(-0.5, (0, 0, 1))}, r"negative probability at s=0, a=0, s'=1"),
    ("nan prob", {"P": _bad_P(np.nan)}, r"NaN probability at s=0, a=1, s'=1"),
    ("nan reward", {"R": np.array([[0.0, np.nan], [0.0, 0.0]])}, r"R\(s=0, a=1\) is nan"),
    ("inf reward", {"R": np.array([[0.0, 0.0], [np.inf, 0.0]])}, r"R\(s=1, a=0\) is inf"),
    ("inf reward 3d", {"R": np.full((2, 2, 2), -np.inf)}, r"R\(s=0, a=0\) is -inf"),
    ("gamma > 1", {"gamma": 1.5}, r"gamma must be in \[0, 1\], got 1\.5"),
    ("gamma < 0", {"gamma": -0.1}, r"gamma must be in \[0, 1\], got -0\.1"),
    ("gamma nan", {"gamma": float("nan")}, r"gamma must be in \[0, 1\], got nan"),
    ("gamma str", {"gamma": "high"}, r"gamma must be a number"),
    ("P 2-d", {"P": np.eye(2)}, r"P must have shape \(S, A, S\), got \(2, 2\)"),
    ("P not square", {"P": np.ones((2, 2, 3)) / 3}, r"P must have shape \(S, A, S\), got \(2, 2, 3\)"),
    ("R wrong shape", {"R": np.zeros((3, 2))}, r"R has shape \(3, 2\); expected \(S, A\) = \(2, 2\)"),
    ("R 1-d", {"R": np.zeros(2)}, r"R must have shape \(S, A\) or \(S, A, S\), got \(2,\)"),
    ("terminal not absorbing", {"terminal": [0]}, r"terminal state 0 is not absorbing: P\(0\|0, a=1\) = 0"),
    ("terminal reward", {"terminal": [1], "R": np.array([[0.0, 1.0], [2.0, 0.0]])},
     r"terminal state 1 has nonzero reward 2 for a=0"),
    ("terminal index", {"terminal": [5]}, r"terminal state index out of range \[0, 2\): \[5\]"),
    ("terminal mask shape", {"terminal": np.array([True, False, False])}, r"terminal mask must have shape \(2,\)"),
    ("initial sum", {"initial": [0.5, 0.2]}, r"initial sums to 0\.7, not 1"),
    ("initial negative", {"initial": [1.5, -0.5]}, r"initial\[1\] = -0\.5 is not a probability"),
    ("state names", {"state_names": ["a"]}, r"state_names has 1 names for 2 states"),
    ("action names", {"action_names": ["l", "r", "x"]}, r"action_names has 3 names for 2 actions"),
]


@pytest.mark.parametrize("name,over,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_culprit(name, over, pattern):
    with pytest.raises(InvalidMDPError, match=pattern):
        TabularMDP(**two_state(**over))


def test_invalid_mdp_error_is_value_error():
    assert issubclass(InvalidMDPError, ValueError)


def test_bad_input_names_state_and_action_names():
    kw = two_state(P=_bad_P(0.5), state_names=["home", "away"], action_names=["stay", "go"])
    with pytest.raises(InvalidMDPError, match=r"s=0 \('home'\), a=1 \('go'\)"):
        TabularMDP(**kw)


def test_row_sum_tolerance_is_stated():
    P = _bad_P(1.0 + 5e-9)
    P[0, 1, 0] = 0.0
    TabularMDP(**two_state(P=P))  # within 1e-8
    with pytest.raises(InvalidMDPError, match="tolerance 1e-08"):
        TabularMDP(**two_state(P=_bad_P(1.0 + 1e-6)))


def test_sparse_bad_row_and_shape():
    P = sp.csr_array(np.array([[1.0, 0.0], [0.0, 0.7], [0.0, 1.0], [0.0, 1.0]]))
    with pytest.raises(InvalidMDPError, match=r"P\(\.\|s=0, a=1\) sums to 0\.7"):
        TabularMDP(P, np.zeros((2, 2)), 0.9)
    with pytest.raises(InvalidMDPError, match=r"expected \(S\*A, S\)"):
        TabularMDP(sp.csr_array(np.eye(2)), np.zeros((2, 2)), 0.9)


# ---------------------------------------------------------------- representations agree
def test_dense_sparse_and_list_forms_agree():
    mdp = catalog.garnet(30, 3, 4, seed=1, sparse=False)
    sparse = TabularMDP(sp.csr_array(mdp.P.reshape(90, 30)), mdp.R, mdp.gamma)
    as_list = TabularMDP([sp.csr_array(mdp.P[:, a, :]) for a in range(3)], mdp.R, mdp.gamma)
    for other in (sparse, as_list):
        assert other.is_sparse
        np.testing.assert_allclose(other.transition_matrix().toarray(), mdp.P.reshape(90, 30))
        np.testing.assert_allclose(other.expected_reward, mdp.expected_reward)


def test_expected_reward_from_three_d_rewards():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(4), size=(4, 2))
    R = rng.normal(size=(4, 2, 4))
    mdp = TabularMDP(P, R, 0.5)
    np.testing.assert_allclose(mdp.expected_reward, (P * R).sum(-1))
    indptr, nxt, prob, rew = mdp.transitions()
    for row in range(8):
        s, a = divmod(row, 2)
        sl = slice(indptr[row], indptr[row + 1])
        np.testing.assert_allclose(prob[sl], P[s, a, nxt[sl]])
        np.testing.assert_allclose(rew[sl], R[s, a, nxt[sl]])


def test_garnet_structure():
    mdp = catalog.garnet(200, 5, 7, seed=3)
    M = mdp.transition_matrix()
    nnz = (M > 0).sum(axis=1) if not mdp.is_sparse else np.diff(M.indptr)
    assert np.all(np.asarray(nnz) == 7)
    big = catalog.garnet(3000, 2, 3, seed=0)
    assert big.is_sparse and np.all(np.diff(big.P.indptr) == 3)
    np.testing.assert_allclose(np.asarray(big.P.sum(axis=1)), 1.0)


def test_garnet_seeded():
    a, b = catalog.garnet(50, 3, 5, seed=7), catalog.garnet(50, 3, 5, seed=7)
    np.testing.assert_array_equal(a.P, b.P)
    assert not np.array_equal(a.P, catalog.garnet(50, 3, 5, seed=8).P)


def test_catalog_unknown_name():
    with pytest.raises(InvalidMDPError, match="unknown MDP 'nope'; choose one of: line-world"):
        catalog.get("nope")


def test_forest_matches_pymdptoolbox():
    example = pytest.importorskip("mdptoolbox.example")
    P, R = example.forest(S=5, r1=4, r2=2, p=0.1)
    mdp = catalog.forest(S=5, r1=4, r2=2, p=0.1)
    for a in range(2):
        np.testing.assert_allclose(mdp.P[:, a, :], P[a])
    np.testing.assert_allclose(mdp.expected_reward, R)


# ---------------------------------------------------------------- Gymnasium bridge
def test_to_env_passes_check_env():
    env = catalog.line_world().to_env(seed=0, max_episode_steps=20)
    check_env(env, skip_render_check=True)


def test_to_env_samples_transition_probabilities():
    mdp = catalog.garnet(5, 2, 3, seed=0, sparse=False)
    env = mdp.to_env(seed=1)
    counts = np.zeros(5)
    n = 20000
    for _ in range(n):
        env.reset()
        env.unwrapped._state = 2
        s2, r, *_ = env.step(1)
        counts[s2] += 1
        assert r == pytest.approx(mdp.expected_reward[2, 1])
    # multinomial: 5 standard errors
    p = mdp.P[2, 1]
    assert np.all(np.abs(counts / n - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12)


def test_to_env_terminates_and_truncates():
    env = catalog.line_world(n_states=2).to_env(seed=0, max_episode_steps=3)
    s, _ = env.reset()
    assert s == 0
    assert env.step(1)[2:4] == (False, False)
    s, r, term, trunc, _ = env.step(1)
    assert (s, r, term, trunc) == (2, 1.0, True, False)
    env.reset()
    env.step(0), env.step(0)
    assert env.step(0)[2:4] == (False, True)


def test_from_gymnasium_frozen_lake_model():
    env = gym.make("FrozenLake-v1")
    mdp = from_gymnasium(env, gamma=0.9)
    base = env.unwrapped
    assert mdp.n_states == 16 and mdp.n_actions == 4
    for s in range(16):
        for a in range(4):
            if mdp.terminal[s]:
                continue
            expected = np.zeros(16)
            for p, s2, _r, _d in base.P[s][a]:
                expected[s2] += p
            np.testing.assert_allclose(mdp.P[s, a], expected)
    holes_goal = [i for i, c in enumerate(base.desc.flatten()) if c in b"HG"]
    assert np.flatnonzero(mdp.terminal).tolist() == holes_goal
    assert mdp.expected_reward[14, 2] == pytest.approx(1 / 3)  # right from 14: slip into goal 1/3


def test_from_gymnasium_cliff_walking_and_taxi():
    cliff = from_gymnasium(gym.make("CliffWalking-v1"), gamma=1.0)
    assert np.flatnonzero(cliff.terminal).tolist() == [47]
    assert cliff.expected_reward[36, 1] == -100  # step right from start into the cliff
    taxi = catalog.get("taxi")
    assert taxi.n_states == 500 and taxi.n_actions == 6 and taxi.terminal.sum() == 4
    assert taxi.expected_reward.max() == 20


def test_from_gymnasium_rejects_continuous():
    with pytest.raises(InvalidMDPError):
        from_gymnasium(gym.make("CartPole-v1"))


# ---------------------------------------------------------------- dense P stored as CSR
@st.composite
def dense_mdps(draw):
    """Random dense (S, A, S) MDPs whose density runs from one successor per row to full,
    with (S, A) or (S, A, S) rewards, in either dense layout."""
    S, A = draw(st.integers(2, 12)), draw(st.integers(1, 4))
    density = draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    P = rng.random((S, A, S)) * (rng.random((S, A, S)) < density)
    P[np.arange(S)[:, None], np.arange(A)[None, :], rng.integers(0, S, (S, A))] += 0.5
    P /= P.sum(axis=2, keepdims=True)
    R = rng.normal(size=(S, A, S) if draw(st.booleans()) else (S, A))
    return P, R, float(draw(st.sampled_from([0.0, 0.5, 0.95]))), draw(st.sampled_from(["SAS", "ASS"]))


@given(dense_mdps())
@settings(max_examples=60, deadline=None)
def test_dense_stored_as_csr_gives_same_v_q_policy(monkeypatch_case):
    from policylab import planning, tabular
    from policylab.mdp import model

    P, R, gamma, layout = monkeypatch_case
    if layout == "ASS":
        P, R = P.transpose(1, 0, 2).copy(), (R.transpose(1, 0, 2).copy() if R.ndim == 3 else R)
    dense = TabularMDP(P, R, gamma, layout=layout)
    saved = model.CSR_MIN_ENTRIES
    model.CSR_MIN_ENTRIES = 0  # convert every size
    try:
        conv = TabularMDP(P, R, gamma, layout=layout)
    finally:
        model.CSR_MIN_ENTRIES = saved
    density = np.count_nonzero(dense.P) / dense.P.size
    assert not dense.is_sparse and conv.is_sparse == (density <= model.CSR_MAX_DENSITY)
    np.testing.assert_array_equal(conv.transition_matrix().toarray() if conv.is_sparse
                                  else conv.transition_matrix(), dense.transition_matrix())
    np.testing.assert_allclose(conv.expected_reward, dense.expected_reward, rtol=1e-12, atol=1e-12)
    a, b = planning.value_iteration(dense, tol=1e-10), planning.value_iteration(conv, tol=1e-10)
    np.testing.assert_allclose(b.V, a.V, atol=1e-9)
    np.testing.assert_allclose(b.Q, a.Q, atol=1e-9)
    assert np.all(a.Q[np.arange(len(a.policy)), b.policy] >= a.V - 1e-8)  # b's policy is optimal
    pi = np.full((dense.n_states, dense.n_actions), 1.0 / dense.n_actions)
    np.testing.assert_allclose(planning.evaluate_policy(conv, pi), planning.evaluate_policy(dense, pi),
                               atol=1e-9)
    for i, j in zip(conv.transitions(), dense.transitions()):
        np.testing.assert_array_equal(i, j)
    q1 = tabular.q_learning(dense, 300, 0.5, 0.3, seed=1, max_episode_steps=20)
    q2 = tabular.q_learning(conv, 300, 0.5, 0.3, seed=1, max_episode_steps=20)
    np.testing.assert_array_equal(q1.Q, q2.Q)


def test_dense_scan_names_a_bad_entry():
    from policylab.mdp import model

    P = np.zeros((300, 2, 300))
    P[:, :, 0] = 1.0
    P[7, 1, 5], P[7, 1, 0] = -0.25, 1.25
    saved = model.CSR_MIN_ENTRIES
    model.CSR_MIN_ENTRIES = 0
    try:
        with pytest.raises(InvalidMDPError, match=r"negative probability at s=7, a=1, s'=5"):
            TabularMDP(P, np.zeros((300, 2)), 0.9)
        P[7, 1, 5] = np.nan
        with pytest.raises(InvalidMDPError, match=r"NaN probability at s=7, a=1, s'=5"):
            TabularMDP(P, np.zeros((300, 2)), 0.9)
    finally:
        model.CSR_MIN_ENTRIES = saved


def test_large_sparse_dense_input_becomes_csr_and_names_are_lazy():
    mdp = catalog.garnet(600, 3, 4, seed=0, sparse=False)  # 1.08M entries, density 0.7%
    assert mdp.is_sparse and mdp.P.nnz == 600 * 3 * 4
    assert len(mdp.state_names) == 600 and mdp.state_names[599] == "599"
    assert list(mdp.state_names[:3]) == ["0", "1", "2"]
