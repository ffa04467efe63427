"""Issue 11 faults in the MDP, planning and tabular layers, each reproduced, now refused.

NaN rewards from a gymnasium env, step counts beyond MAX_STEPS, improper greedy policies at
γ = 1, value overflow, ambiguous dense layouts of P, and trace files left behind on failure.
"""

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab import planning, tabular
from policylab.cli import main
from policylab.errors import DivergenceError, InputError, InvalidMDPError, PolicylabError
from policylab.mdp import TabularMDP, catalog


class NaNRewardEnv(gym.Env):
    """A 3-state chain whose reward turns NaN at global step ``bad_step`` (0-based)."""

    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, bad_step: int, value=float("nan")):
        self.bad_step, self.value, self.t, self.s = bad_step, value, 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return 0, {}

    def step(self, a):
        r = self.value if self.t == self.bad_step else 1.0
        self.t += 1
        self.s = min(self.s + 1, 2)
        return self.s, r, self.s == 2, False, {}


@pytest.mark.parametrize("learner", ["q_learning", "sarsa", "expected_sarsa"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_reward_from_env_stops_naming_step_and_reward(learner, value):
    fn = getattr(tabular, learner)
    with pytest.raises(DivergenceError, match=r"step 7\b.*reward") as err:
        fn(NaNRewardEnv(7, value), 50, 0.1, 0.1, gamma=0.9)
    assert "nan" in str(err.value) or "inf" in str(err.value)


def test_nonfinite_reward_stops_td0_and_mc():
    pi = np.zeros(3, dtype=np.int64)
    with pytest.raises(DivergenceError, match=r"step 4\b.*reward"):
        tabular.td0_prediction(NaNRewardEnv(4), pi, 50, 0.1, gamma=0.9)
    with pytest.raises(DivergenceError, match=r"step 4\b.*reward"):
        tabular.mc_prediction(NaNRewardEnv(4), pi, 20, gamma=0.9)


def test_finite_rewards_still_learn_on_env():
    res = tabular.q_learning(NaNRewardEnv(10**9), 200, 0.5, 0.1, gamma=0.9)
    assert np.isfinite(res.Q).all() and res.Q.max() > 0


@pytest.mark.parametrize("steps", [1e19, 1e30, 10**30, 2**63, tabular.MAX_STEPS + 1])
def test_steps_beyond_max_rejected_before_work(steps):
    with pytest.raises(InputError, match=r"steps.*MAX_STEPS"):
        tabular.q_learning(catalog.line_world(), steps, 0.1, 0.1)
    with pytest.raises(InputError, match=r"episodes.*MAX_STEPS"):
        tabular.mc_prediction(catalog.line_world(), np.ones(4, np.int64), steps)


@pytest.mark.parametrize("steps", ["1e19", "1e30"])
def test_cli_learn_huge_steps_exit_2(capsys, steps):
    assert main(["learn", "q-learning", "--steps", steps, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "steps" in err and ("MAX_STEPS" in err or "1e12" in err) and "Traceback" not in err


# ---------------------------------------------------------------------------- planning, γ = 1
@pytest.mark.parametrize("method", ["vi", "mpi", "pi"])
def test_gamma_one_line_world_policy_is_proper(method):
    mdp = catalog.line_world(gamma=1.0)
    solve = {"vi": planning.value_iteration, "mpi": planning.modified_policy_iteration,
             "pi": planning.policy_iteration}[method]
    res = solve(mdp)
    assert res.policy[:3].tolist() == [1, 1, 1]  # right, right, right: the only proper choice
    np.testing.assert_allclose(planning.evaluate_policy(mdp, res.policy), res.V, atol=1e-9)


def test_cli_plan_gamma_one_prints_right(capsys):
    assert main(["plan", "--mdp", "line-world", "--gamma", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[3:6]]
    assert [r[-1] for r in rows] == ["right", "right", "right"]


@st.composite
def episodic_mdps(draw):
    """Random episodic MDPs with zero (or tied) rewards: every Q* is tied, greedy lowest-index
    choices often loop forever; at least one action per state leads toward the terminal."""
    S = draw(st.integers(2, 7))
    A = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    P = np.zeros((S, A, S))
    for s in range(S - 1):
        for a in range(A):
            succ = rng.choice(S, size=rng.integers(1, S + 1), replace=False)
            P[s, a, succ] = rng.dirichlet(np.ones(len(succ)))
        a_good = rng.integers(A)
        P[s, a_good] = 0.0
        P[s, a_good, s + 1] = 1.0  # a path to the terminal state S−1
    P[S - 1, :, S - 1] = 1.0
    return TabularMDP(P, np.zeros((S, A)), 1.0, terminal=[S - 1], layout="SAS")


@given(episodic_mdps())
@settings(max_examples=60, deadline=None)
def test_gamma_one_policy_always_proper(mdp):
    for solve in (planning.value_iteration, planning.modified_policy_iteration):
        res = solve(mdp)
        V = planning.evaluate_policy(mdp, res.policy)  # raises if the policy never terminates
        np.testing.assert_allclose(V, 0.0, atol=1e-12)


def test_value_overflow_is_an_error_not_inf():
    S = 3
    P = np.zeros((S, 1, S))
    P[0, 0, 1] = P[1, 0, 2] = P[2, 0, 2] = 1.0
    R = np.array([[1e308], [1e308], [0.0]])
    mdp = TabularMDP(P, R, 1.0, terminal=[2])
    with pytest.raises(DivergenceError, match="V"):
        planning.value_iteration(mdp)
    with pytest.raises(DivergenceError, match="V"):
        planning.modified_policy_iteration(mdp)
    loop = TabularMDP(np.ones((1, 1, 1)), np.array([[1e307]]), 0.99)
    with pytest.raises(PolicylabError, match=r"R|V"):
        planning.value_iteration(loop)


# ---------------------------------------------------------------------------- layouts of P
def _ass_mdp(S, A, seed):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(A, S))  # (A, S, S): P[a, s, s']
    R = rng.normal(size=(S, A))
    return P, R


def test_dense_ass_layout_accepted_when_unambiguous():
    P, R = _ass_mdp(5, 3, 0)
    a = TabularMDP(P, R, 0.9)
    b = TabularMDP(P.transpose(1, 0, 2), R, 0.9)
    np.testing.assert_array_equal(a.transition_matrix(), b.transition_matrix())
    np.testing.assert_allclose(planning.value_iteration(a).V, planning.value_iteration(b).V)


def test_dense_square_layout_is_ambiguous_without_argument():
    P, R = _ass_mdp(4, 4, 1)
    with pytest.raises(InvalidMDPError, match="layout"):
        TabularMDP(P, R, 0.9)
    ass = TabularMDP(P, R, 0.9, layout="ASS")
    sas = TabularMDP(P.transpose(1, 0, 2), R, 0.9, layout="SAS")
    np.testing.assert_array_equal(ass.transition_matrix(), sas.transition_matrix())
    with pytest.raises(InvalidMDPError, match="layout"):
        TabularMDP(P, R, 0.9, layout="SSA")
    with pytest.raises(InvalidMDPError, match=r"layout='ASS'.*\(A, S, S\)"):
        TabularMDP(P.transpose(1, 0, 2)[:, :3], R[:, :3], 0.9, layout="ASS")


def test_pymdptoolbox_forest_dense_output_solves_like_the_toolbox():
    example = pytest.importorskip("mdptoolbox.example")
    mdp_tb = pytest.importorskip("mdptoolbox.mdp")
    P, R = example.forest(S=6)  # dense (A, S, S), R (S, A)
    ours = planning.value_iteration(TabularMDP(P, R, 0.9), tol=1e-10)
    theirs = mdp_tb.PolicyIteration(P, R, 0.9)
    theirs.run()
    np.testing.assert_allclose(ours.V, theirs.V, atol=1e-8)
    assert tuple(ours.policy) == tuple(theirs.policy)


# ---------------------------------------------------------------------------- trace files
def test_write_trace_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    from policylab.tabular import result

    res = tabular.q_learning(catalog.line_world(), 100, 0.1, 0.1, trace=True)
    target = tmp_path / "trace.npy"

    def broken_save(f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(result.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        result.write_trace(str(target), res.trace)
    assert list(tmp_path.iterdir()) == []


def test_write_trace_into_directory_names_the_file(tmp_path):
    from policylab.tabular.result import write_trace

    res = tabular.q_learning(catalog.line_world(), 10, 0.1, 0.1, trace=True)
    with pytest.raises(InputError, match=str(tmp_path)):
        write_trace(str(tmp_path), res.trace)
    with pytest.raises(InputError, match="missing"):
        write_trace(str(tmp_path / "missing" / "t.csv"), res.trace)
    assert list(tmp_path.iterdir()) == []
    write_trace(str(tmp_path / "t.csv"), res.trace)
    back = np.genfromtxt(tmp_path / "t.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(back["q_after"], res.trace["q_after"])
