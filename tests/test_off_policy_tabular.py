"""Tabular Q-learning from logged transitions recovers Q* (compared to value iteration)."""

import numpy as np
import pytest

from policylab import planning, tabular
from policylab.errors import DataError, InputError
from policylab.mdp import catalog


def _log_uniform_random(mdp, episodes, max_len, seed):
    """Transitions of the uniform random policy in ``episodes`` parallel episodes, sampled from
    (P, R) with numpy; rows in time order within each episode."""
    rng = np.random.default_rng(seed)
    P = mdp.P.toarray() if hasattr(mdp.P, "toarray") else np.asarray(mdp.P)
    R = mdp.R if np.ndim(mdp.R) == 3 else np.broadcast_to(np.asarray(mdp.R)[:, :, None], P.shape)
    cdf = np.cumsum(P, axis=2)
    s = rng.choice(mdp.n_states, size=episodes, p=mdp.initial)
    alive = np.ones(episodes, bool)
    rows = []
    for _ in range(max_len):
        a = rng.integers(mdp.n_actions, size=episodes)
        s2 = np.minimum((rng.random(episodes)[:, None] > cdf[s, a]).sum(axis=1), mdp.n_states - 1)
        term = mdp.terminal[s2]
        rows.append(np.stack([s, a, R[s, a, s2], s2, term], axis=1)[alive])
        alive &= ~term
        s = s2
    d = np.concatenate(rows)
    return {"s": d[:, 0].astype(int), "a": d[:, 1].astype(int), "r": d[:, 2], "s_next": d[:, 3].astype(int),
            "terminated": d[:, 4].astype(bool)}


def test_line_world_recovers_q_star_exactly():
    mdp = catalog.line_world(5, gamma=0.9)
    data = _log_uniform_random(mdp, episodes=100, max_len=50, seed=0)
    res = tabular.q_learning_from_transitions(mdp, data)
    q_star = planning.value_iteration(mdp, tol=1e-12).Q
    live = ~mdp.terminal
    assert np.allclose(res.Q[live], q_star[live], atol=1e-6)  # deterministic: the data is the MDP
    assert res.config["sweeps"] < 1000
    # closed form from the catalog docstring: Q*(s_i, right) = γ^(n−i)
    assert np.allclose(res.Q[:5, 1], 0.9 ** np.arange(4, -1, -1), atol=1e-6)


def test_frozen_lake_recovers_q_star():
    mdp = catalog.get("frozen-lake", gamma=0.9)
    data = _log_uniform_random(mdp, episodes=100_000, max_len=100, seed=1)
    res = tabular.q_learning_from_transitions(mdp, data, tol=1e-6)
    q_star = planning.value_iteration(mdp, tol=1e-12).Q
    seen = res.visits > 0
    assert seen[~mdp.terminal].all()
    assert np.max(np.abs(res.Q - q_star)[seen]) < 0.03
    # the greedy policy is optimal: its value equals V* up to the estimate's error
    v_pi = planning.evaluate_policy(mdp, res.policy)
    assert np.max(np.abs(v_pi - q_star.max(axis=1))) < 0.01
    # a constant step size replayed over the data lands near the same answer
    const = tabular.q_learning_from_transitions(mdp, data, alpha=0.002, sweeps=5)
    assert np.max(np.abs(const.Q - q_star)[seen]) < 0.05


def test_trace_of_online_q_learning_is_a_dataset():
    mdp = catalog.line_world(3, gamma=0.9)
    online = tabular.q_learning(mdp, steps=3000, alpha=0.1, epsilon=1.0, seed=0, trace=True)
    res = tabular.q_learning_from_transitions(mdp, online.trace)
    assert np.allclose(res.Q[:3], planning.value_iteration(mdp).Q[:3], atol=1e-6)


def test_bad_datasets():
    mdp = catalog.line_world(3)
    ok = {"s": [0, 1], "a": [1, 1], "r": [0.0, 0.0], "s_next": [1, 2], "terminated": [False, False]}
    with pytest.raises(DataError, match="'r' has shape"):
        tabular.q_learning_from_transitions(mdp, ok | {"r": [0.0]})
    with pytest.raises(DataError, match="row 1: a=2"):
        tabular.q_learning_from_transitions(mdp, ok | {"a": [1, 2]})
    with pytest.raises(DataError, match="row 0: s_next=7"):
        tabular.q_learning_from_transitions(mdp, ok | {"s_next": [7, 2]})
    with pytest.raises(DataError, match="missing"):
        tabular.q_learning_from_transitions(mdp, {"s": [0]})
    with pytest.raises(InputError, match="gamma is required"):
        tabular.q_learning_from_transitions((4, 2), ok)
    with pytest.raises(InputError, match="alpha"):
        tabular.q_learning_from_transitions(mdp, ok, alpha=0.0)
