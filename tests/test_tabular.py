"""policylab.tabular: update equations, schedules, traces, termination vs truncation,
compiled == Python path, and bad inputs. Convergence lives in test_tabular_convergence.py."""

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab import planning, returns, tabular
from policylab.errors import InputError
from policylab.mdp import TabularMDP, catalog
from policylab.tabular import schedules as sch
from policylab.tabular.rng import epsilon_greedy_action, make_rng_state, next_uniform

CONTROL = {"q-learning": tabular.q_learning, "sarsa": tabular.sarsa,
           "expected-sarsa": tabular.expected_sarsa}
settings.register_profile("tabular", max_examples=25, deadline=None)


# ---------------------------------------------------------------------------- helpers
@st.composite
def small_mdps(draw, deterministic=False, with_terminal=None):
    """Random MDP with S ∈ [2, 5], A ∈ [1, 3]; optionally one absorbing zero-reward terminal."""
    S = draw(st.integers(2, 5))
    A = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    terminal = draw(st.booleans()) if with_terminal is None else with_terminal
    rng = np.random.default_rng(seed)
    if deterministic:
        P = np.zeros((S, A, S))
        P[np.arange(S)[:, None], np.arange(A)[None, :], rng.integers(0, S, (S, A))] = 1.0
    else:
        P = rng.dirichlet(np.ones(S) * 0.7, size=(S, A))
    R = rng.normal(size=(S, A, S)).round(3)
    gamma = float(draw(st.sampled_from([0.0, 0.5, 0.9, 1.0])))
    term = None
    if terminal:
        P[S - 1] = 0.0
        P[S - 1, :, S - 1] = 1.0
        R[S - 1] = 0.0
        term = [S - 1]
        if gamma == 1.0:
            gamma = 0.9  # keep values finite when the policy can avoid the terminal state
    initial = np.zeros(S)
    initial[0] = 1.0
    return TabularMDP(P, R, gamma, initial=initial, terminal=term, layout="SAS")


def _replay_tables(mdp, trace, q0):
    """Yield (row, Q before that update) by replaying q_after: an independent check of the trace."""
    Q = q0.copy()
    for row in trace:
        yield row, Q.copy()
        Q[row["s"], row["a"]] = row["q_after"]


# ---------------------------------------------------------------------------- equations
@given(r=st.floats(-10, 10), gamma=st.floats(0, 1), term=st.booleans(),
       q=st.lists(st.floats(-10, 10), min_size=1, max_size=5), eps=st.floats(0, 1),
       est=st.floats(-10, 10), alpha=st.floats(0.01, 1))
@settings(max_examples=60, deadline=None)
def test_update_equations_match_hand_formulas(r, gamma, term, q, eps, est, alpha):
    q_t = np.array(q)
    disc = tabular.bootstrap_discount(gamma, term)
    assert disc == (0.0 if term else gamma)
    assert tabular.td_target(r, disc, 2.5) == pytest.approx(r + disc * 2.5)
    assert tabular.q_learning_target(r, disc, q_t) == pytest.approx(r + disc * max(q))
    a = len(q) - 1
    assert tabular.sarsa_target(r, disc, q_t, a) == pytest.approx(r + disc * q[a])
    # ε-greedy expectation: greedy mass (1−ε) split over the argmax set, ε/A on every action
    best = [i for i, x in enumerate(q) if x == max(q)]
    probs = [eps / len(q) + ((1 - eps) / len(best) if i in best else 0.0) for i in range(len(q))]
    expect = sum(p * x for p, x in zip(probs, q))
    assert tabular.expected_sarsa_target(r, disc, q_t, eps) == pytest.approx(r + disc * expect, abs=1e-9)
    delta = tabular.td_error(r, est)
    assert delta == pytest.approx(r - est)
    assert tabular.incremental_update(est, alpha, delta) == pytest.approx(est + alpha * (r - est), abs=1e-9)
    assert tabular.return_step(r, gamma, 3.0) == pytest.approx(r + gamma * 3.0)


@settings(settings.get_profile("tabular"))
@given(mdp=small_mdps(), algo=st.sampled_from(sorted(CONTROL)), steps=st.integers(1, 40),
       alpha=st.floats(0.05, 1.0), eps=st.floats(0.0, 1.0), seed=st.integers(0, 1000),
       q0_seed=st.integers(0, 1000), max_ep=st.sampled_from([None, 3]))
def test_each_control_update_equals_hand_formula(mdp, algo, steps, alpha, eps, seed, q0_seed,
                                                 max_ep):
    q0 = np.random.default_rng(q0_seed).normal(size=(mdp.n_states, mdp.n_actions))
    res = CONTROL[algo](mdp, steps, alpha, eps, seed=seed, initial_value=q0, trace=True,
                        max_episode_steps=max_ep)
    tr = res.trace
    assert len(tr) == steps and np.array_equal(tr["t"], np.arange(steps))
    P = mdp.P
    for i, (row, Q) in enumerate(_replay_tables(mdp, tr, q0)):
        s, a, s2 = row["s"], row["a"], row["s_next"]
        assert P[s, a, s2] > 0 and row["r"] == mdp.R[s, a, s2]          # a real transition
        assert row["terminated"] == mdp.terminal[s2]
        disc = 0.0 if row["terminated"] else mdp.gamma
        if algo == "q-learning":
            target = row["r"] + disc * Q[s2].max()
        elif algo == "sarsa":
            a2 = row["a_next"]
            if not row["terminated"] and not row["truncated"] and i + 1 < steps:
                assert tr[i + 1]["a"] == a2 and tr[i + 1]["s"] == s2     # a' is then taken
            target = row["r"] + (disc * Q[s2, a2] if not row["terminated"] else 0.0)
        else:
            target = row["r"] + disc * ((1 - eps) * Q[s2].max() + eps * Q[s2].mean())
        assert row["q_before"] == Q[s, a]
        assert row["target"] == pytest.approx(target, abs=1e-12)
        assert row["td_error"] == pytest.approx(target - Q[s, a], abs=1e-12)
        assert row["q_after"] == pytest.approx(Q[s, a] + alpha * (target - Q[s, a]), abs=1e-12)
    Q = q0.copy()
    for row in tr:
        Q[row["s"], row["a"]] = row["q_after"]
    np.testing.assert_array_equal(Q, res.Q)


@settings(settings.get_profile("tabular"))
@given(mdp=small_mdps(deterministic=True), steps=st.integers(1, 30), seed=st.integers(0, 1000),
       q0_seed=st.integers(0, 1000))
def test_alpha_one_deterministic_sweep_is_bellman_optimality_backup(mdp, steps, seed, q0_seed):
    """α = 1 on a deterministic MDP: a sweep of Q-learning over the visited pairs equals the
    sweep of Bellman optimality backups (T*Q)(s, a) = R(s, a) + γ Σ_s' P(s'|s,a) max_a' Q(s', a'),
    computed by planning from the model, applied to the same pairs in the same order."""
    q0 = np.random.default_rng(q0_seed).normal(size=(mdp.n_states, mdp.n_actions))
    q0[mdp.terminal] = 0.0  # V(terminal) = 0: the backup and the no-bootstrap rule then agree
    res = tabular.q_learning(mdp, steps, 1.0, 1.0, seed=seed, initial_value=q0, trace=True,
                             max_episode_steps=4)
    Q = q0.copy()
    for s, a in zip(res.trace["s"], res.trace["a"]):  # only the visit order comes from the run
        Q[s, a] = planning.bellman_optimality_backup_q(mdp, Q)[s, a]
    np.testing.assert_allclose(res.Q, Q, rtol=0, atol=1e-12)
    for row, Q_before in _replay_tables(mdp, res.trace, q0):  # and update by update
        backup = planning.bellman_optimality_backup_q(mdp, Q_before)  # (S, A)
        assert row["q_after"] == pytest.approx(backup[row["s"], row["a"]], abs=1e-12)


@settings(settings.get_profile("tabular"))
@given(mdp=small_mdps(), steps=st.integers(1, 40), alpha=st.floats(0.05, 1.0),
       seed=st.integers(0, 1000))
def test_td0_update_equals_hand_formula(mdp, steps, alpha, seed):
    pi = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    res = tabular.td0_prediction(mdp, pi, steps, alpha, seed=seed, trace=True, max_episode_steps=5)
    V = np.zeros(mdp.n_states)
    v_next = []
    for row in res.trace:
        s, s2 = row["s"], row["s_next"]
        target = row["r"] + (0.0 if row["terminated"] else mdp.gamma) * V[s2]
        assert row["q_before"] == V[s]
        assert row["q_after"] == pytest.approx(V[s] + alpha * (target - V[s]), abs=1e-12)
        v_next.append(V[s2])
        V[s] = row["q_after"]
    np.testing.assert_array_equal(V, res.V)
    # the batched deep-RL form of the same equation agrees: returns.td_errors
    tr = res.trace
    delta = returns.td_errors(tr["r"], mdp.gamma, tr["q_before"], np.array(v_next),
                              terminated=tr["terminated"], truncated=tr["truncated"])
    np.testing.assert_allclose(tr["td_error"], delta, rtol=0, atol=1e-12)


def test_mc_trace_is_backward_returns_and_sample_means():
    mdp = catalog.line_world(n_states=3, gamma=0.9)
    pi = np.full((4, 2), 0.5)
    res = tabular.mc_prediction(mdp, pi, 50, first_visit=False, trace=True, seed=3)
    tr = res.trace
    assert len(tr) == res.steps  # every-visit: one update per step
    returns: dict[int, list[float]] = {}
    for ep in range(50):
        rows = np.sort(tr[tr["episode"] == ep], order="t")
        g = 0.0
        for row in rows[::-1]:
            g = row["r"] + 0.9 * g
            assert row["target"] == pytest.approx(g)
            returns.setdefault(int(row["s"]), []).append(g)
        assert rows["terminated"][-1] and not rows["terminated"][:-1].any()
    for s, gs in returns.items():  # α = 1/N(s): V is the sample mean of the returns
        assert res.V[s] == pytest.approx(np.mean(gs), abs=1e-12)


def test_first_visit_mc_updates_each_state_once_per_episode():
    mdp = catalog.line_world(n_states=3)
    res = tabular.mc_prediction(mdp, np.full((4, 2), 0.5), 30, trace=True, seed=1)
    for ep in range(30):
        states = res.trace["s"][res.trace["episode"] == ep]
        assert len(states) == len(set(states.tolist()))


def test_alpha_inverse_count_gives_sample_mean_per_action():
    """One-step episodes: Q(s0, a) with α = 1/N(s, a) is the mean of the rewards seen after a."""
    P = np.zeros((3, 2, 3))
    P[0, :, 1], P[0, :, 2] = 0.3, 0.7
    P[1, :, 1] = P[2, :, 2] = 1.0
    R = np.zeros((3, 2, 3))
    R[0, 0] = [0, 1.0, -2.0]
    R[0, 1] = [0, 4.0, 0.5]
    mdp = TabularMDP(P, R, 0.9, initial=[1, 0, 0], terminal=[1, 2])
    res = tabular.q_learning(mdp, 500, tabular.inverse_count(), 0.5, trace=True)
    for a in range(2):
        rs = res.trace["r"][res.trace["a"] == a]
        assert res.Q[0, a] == pytest.approx(rs.mean(), abs=1e-12)
        assert res.visits[0, a] == len(rs)


# ---------------------------------------------------------------------------- termination vs truncation
def test_terminal_transitions_do_not_bootstrap_truncated_ones_do():
    P = np.zeros((2, 1, 2))
    P[0, 0, 1] = P[1, 0, 1] = 1.0
    mdp = TabularMDP(P, np.array([[1.0], [0.0]]), 0.5, initial=[1, 0], terminal=[1])
    res = tabular.q_learning(mdp, 3, 0.5, 0.0, initial_value=10.0, trace=True)
    assert res.trace["terminated"].all() and np.allclose(res.trace["target"], 1.0)  # no γQ(G)=5
    # no terminal state, time limit 1: every step is truncated and bootstraps from Q(s')
    P2 = np.ones((1, 1, 1))
    cont = TabularMDP(P2, np.array([[1.0]]), 0.5)
    res = tabular.q_learning(cont, 3, 1.0, 0.0, initial_value=10.0, trace=True, max_episode_steps=1)
    assert res.trace["truncated"].all() and not res.trace["terminated"].any()
    np.testing.assert_allclose(res.trace["target"], [6.0, 4.0, 3.0])  # 1 + 0.5·Q, Q ← target
    assert len(res.episode_returns) == 3 and (res.episode_lengths == 1).all()


def test_gym_env_truncation_bootstraps():
    env = gym.make("FrozenLake-v1", is_slippery=False, max_episode_steps=2)
    res = tabular.q_learning(env, 200, 0.5, 1.0, gamma=0.9, initial_value=1.0, trace=True)
    tr = res.trace
    trunc = tr[tr["truncated"]]
    assert len(trunc) > 0 and not (trunc["terminated"]).any()
    assert np.all(trunc["target"] > 0)  # r = 0 but bootstraps from Q(s') ≥ ... > 0
    term = tr[tr["terminated"] & (tr["r"] == 0)]  # fell in a hole: target exactly 0
    assert len(term) > 0 and np.all(term["target"] == 0.0)


# ---------------------------------------------------------------------------- compiled == python
@pytest.mark.parametrize("algo", ["q-learning", "sarsa", "expected-sarsa", "td0", "mc"])
@pytest.mark.parametrize("mdp_name", ["frozen-lake", "garnet"])
def test_compiled_path_equals_python_path(algo, mdp_name):
    mdp = catalog.get(mdp_name, **({"S": 12} if mdp_name == "garnet" else {}))
    max_ep = 9 if mdp_name == "garnet" else None  # garnet has no terminal state: truncate
    alpha = tabular.inverse_count(0.7)
    eps = tabular.linear(1.0, 0.05, 1500)
    pi = np.random.default_rng(0).dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)

    def run(backend):
        if algo == "td0":
            return tabular.td0_prediction(mdp, pi, 3000, alpha, seed=7, trace=True,
                                          max_episode_steps=max_ep, backend=backend)
        if algo == "mc":
            return tabular.mc_prediction(mdp, pi, 300, seed=7, trace=True,
                                         max_episode_steps=max_ep, backend=backend)
        return CONTROL[algo](mdp, 3000, alpha, eps, seed=7, trace=True, max_episode_steps=max_ep,
                             backend=backend)

    fast, slow = run("compiled"), run("python")
    assert (fast.backend, slow.backend) == ("compiled", "python")
    for name in ("V", "Q", "policy", "episode_returns", "episode_lengths", "visits", "trace"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert (a is None and b is None) or np.array_equal(a, b), name
    assert len(fast.episode_returns) > 10


@pytest.mark.parametrize("algo", ["q-learning", "td0", "mc"])
def test_progress_chunks_do_not_change_numbers(algo):
    mdp = catalog.get("frozen-lake")
    pi = np.full((16, 4), 0.25)
    if algo == "mc":
        a = tabular.mc_prediction(mdp, pi, 2_000, seed=2, trace=True)
        b = tabular.mc_prediction(mdp, pi, 2_000, seed=2, trace=True, progress=True)
    elif algo == "td0":
        a = tabular.td0_prediction(mdp, pi, 250_000, 0.1, seed=2, trace=True)
        b = tabular.td0_prediction(mdp, pi, 250_000, 0.1, seed=2, trace=True, progress=True)
    else:
        a = tabular.q_learning(mdp, 250_000, 0.1, 0.2, seed=2, trace=True)
        b = tabular.q_learning(mdp, 250_000, 0.1, 0.2, seed=2, trace=True, progress=True)
    assert np.array_equal(a.V, b.V) and np.array_equal(a.trace, b.trace)
    assert np.array_equal(a.episode_returns, b.episode_returns)


def test_seeds_reproduce_and_differ():
    mdp = catalog.get("frozen-lake")
    a, b = tabular.q_learning(mdp, 5000, 0.1, 0.3, seed=4), tabular.q_learning(mdp, 5000, 0.1, 0.3, seed=4)
    c = tabular.q_learning(mdp, 5000, 0.1, 0.3, seed=5)
    assert np.array_equal(a.Q, b.Q) and not np.array_equal(a.Q, c.Q)


# ---------------------------------------------------------------------------- rng and ε-greedy
def test_splitmix64_reference_values():
    # SplitMix64 from seed 0 (Vigna's reference C): first outputs e220a8397b1dcdaf, 6e789e6aa1b965f4
    state = make_rng_state(0)
    expected = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]
    for x in expected:
        assert next_uniform(state) == (x >> 11) * 2.0**-53


def test_uniform_stream_is_uniform():
    state = make_rng_state(123)
    u = np.array([next_uniform(state) for _ in range(20000)])
    assert 0 <= u.min() and u.max() < 1
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    chi2 = ((counts - 2000) ** 2 / 2000).sum()
    assert chi2 < 27.9  # χ²(9) 99.9 % quantile


def test_epsilon_greedy_action_ties_and_exploration():
    q = np.array([1.0, 3.0, 3.0, 0.0])
    assert epsilon_greedy_action(q, 0.0, 0.5, 0.1) == 1   # greedy, first of the tie
    assert epsilon_greedy_action(q, 0.0, 0.5, 0.9) == 2   # greedy, second of the tie
    assert epsilon_greedy_action(q, 0.3, 0.1, 0.99) == 3  # explore: uniform over all 4
    assert epsilon_greedy_action(np.array([0.0, 5.0]), 0.0, 0.0, 0.0) == 1


# ---------------------------------------------------------------------------- schedules
def test_schedules_values():
    assert tabular.constant(0.3)(10**9, 7) == 0.3
    lin = tabular.linear(1.0, 0.1, 100)
    assert [lin(0), lin(50), lin(100), lin(10**6)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    ex = tabular.exponential(1.0, 0.1, 0.5)
    assert [ex(0), ex(1), ex(2)] == pytest.approx([1.0, 0.55, 0.325])
    inv = tabular.inverse_count()
    assert [inv(0, 1), inv(5, 4)] == pytest.approx([1.0, 0.25])
    assert tabular.inverse_count(0.5, 0.5)(0, 4) == pytest.approx(0.25)
    floored = tabular.inverse_count().with_floor(0.2)
    assert [floored(0, 2), floored(0, 10)] == pytest.approx([0.5, 0.2])


@pytest.mark.parametrize("text, expected", [
    ("0.25", tabular.constant(0.25)), ("1/n", tabular.inverse_count()),
    ("inv:0.7", tabular.inverse_count(0.7)), ("inv:0.7,0.5", tabular.inverse_count(0.7, 0.5)),
    ("linear:1,0.05,1e5", tabular.linear(1, 0.05, 100000)),
    ("exp:1,0.01,0.999", tabular.exponential(1, 0.01, 0.999)),
    ("1/n@0.05", tabular.inverse_count().with_floor(0.05)),
])
def test_parse_schedule(text, expected):
    assert tabular.parse_schedule(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "linear:1,2", "exp:1,0,2", "inv:-1", "1/n@x"])
def test_parse_schedule_rejects(text):
    with pytest.raises(ValueError, match="schedule"):
        tabular.parse_schedule(text)


def test_schedule_ranges_are_checked():
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]"):
        sch.as_schedule(tabular.linear(1.0, 0.0, 10), "alpha", zero_ok=False)
    assert sch.as_schedule(tabular.linear(1.0, 0.0, 10), "epsilon", zero_ok=True)
    assert sch.as_schedule(tabular.inverse_count(), "alpha", zero_ok=False)  # → 0 but never 0
    with pytest.raises(ValueError, match=r"epsilon must be in \[0, 1\]"):
        sch.as_schedule(tabular.inverse_count(1.0, 2.0), "epsilon", zero_ok=True)


# ---------------------------------------------------------------------------- bad inputs
class _CountingEnv(gym.Wrapper):
    resets = 0

    def reset(self, **kw):
        type(self).resets += 1
        return super().reset(**kw)


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": 0.0}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"alpha": float("nan")}, "alpha"),
    ({"alpha": "0.1"}, "alpha"), ({"epsilon": -0.1}, "epsilon"), ({"epsilon": 1.01}, "epsilon"),
    ({"steps": 0}, "steps"), ({"steps": -3}, "steps"), ({"steps": 2.5}, "steps"),
    ({"gamma": 1.5}, "gamma"), ({"seed": -1}, "seed"), ({"max_episode_steps": 0}, "max_episode_steps"),
    ({"initial_value": np.zeros(3)}, "initial_value"), ({"backend": "gpu"}, "backend"),
])
@pytest.mark.parametrize("algo", sorted(CONTROL))
def test_control_bad_inputs_name_the_argument_before_any_work(algo, kwargs, match):
    mdp = catalog.line_world()
    args = {"steps": 10**12, "alpha": 0.1, "epsilon": 0.1} | kwargs  # 10¹² steps: never started
    with pytest.raises(ValueError, match=match):
        CONTROL[algo](mdp, **args)


def test_env_checks_happen_before_any_reset():
    _CountingEnv.resets = 0
    env = _CountingEnv(gym.make("FrozenLake-v1"))
    with pytest.raises(ValueError, match="gamma is required"):
        tabular.q_learning(env, 10, 0.1, 0.1)
    with pytest.raises(ValueError, match="alpha"):
        tabular.q_learning(env, 10, 2.0, 0.1, gamma=0.9)
    with pytest.raises(ValueError, match="compiled"):
        tabular.q_learning(env, 10, 0.1, 0.1, gamma=0.9, backend="compiled")
    with pytest.raises(ValueError, match="policy"):
        tabular.td0_prediction(env, np.zeros(3, int), 10, 0.1, gamma=0.9)
    assert _CountingEnv.resets == 0


@pytest.mark.parametrize("env_id", ["CartPole-v1", "MountainCarContinuous-v0"])
def test_continuous_spaces_are_rejected(env_id):
    with pytest.raises(ValueError, match="Discrete"):
        tabular.q_learning(gym.make(env_id), 10, 0.1, 0.1, gamma=0.9)
    with pytest.raises(ValueError, match="Discrete"):
        tabular.mc_prediction(gym.make(env_id), np.zeros(2, int), 10, gamma=0.9)


def test_not_an_env_is_rejected():
    with pytest.raises(ValueError, match="env_or_mdp"):
        tabular.q_learning("FrozenLake-v1", 10, 0.1, 0.1)


@pytest.mark.parametrize("policy, match", [
    (np.zeros(3, int), r"shape \(4,\)"), (np.full((4, 3), 1 / 3), r"shape \(4,\)"),
    (np.array([0, 1, 2, 0]), r"policy\[2\] = 2"), (np.full((4, 2), 0.4), r"policy\[0\]"),
    (np.zeros(4), "shape"), (None, "policy is required"),
])
@pytest.mark.parametrize("learner", ["td0", "mc"])
def test_wrong_policy_is_rejected_before_any_work(learner, policy, match):
    mdp = catalog.line_world()
    with pytest.raises(ValueError, match=match):
        if learner == "td0":
            tabular.td0_prediction(mdp, policy, 10**12, 0.1)
        else:
            tabular.mc_prediction(mdp, policy, 10**12)


def test_mc_rejects_a_policy_whose_episodes_never_end():
    mdp = catalog.line_world()
    with pytest.raises(ValueError, match="never ends an episode"):
        tabular.mc_prediction(mdp, np.zeros(4, int), 10)  # always "left": never reaches G
    res = tabular.mc_prediction(mdp, np.zeros(4, int), 3, max_episode_steps=5)  # truncated: fine
    assert (res.episode_lengths == 5).all()
    with pytest.raises(ValueError, match="episodes"):
        tabular.mc_prediction(mdp, np.ones(4, int), 0)


# ---------------------------------------------------------------------------- result and trace
def test_line_world_trace_for_figure_6():
    """The figures helper draws the lecture's figure 6 from this trace."""
    mdp = catalog.line_world()
    res = tabular.q_learning(mdp, 40, 1.0, 0.5, trace=True, seed=0)
    tr = res.trace
    assert tr.dtype == tabular.TRACE_DTYPE
    assert set(tr.dtype.names) >= {"s", "a", "r", "s_next", "td_error", "q_before", "q_after"}
    np.testing.assert_allclose(tr["td_error"], tr["target"] - tr["q_before"])
    assert tr["episode"][-1] + (0 if tr["terminated"][-1] else 1) >= len(res.episode_returns)
    assert (res.episode_returns == 1.0).all()  # the only reward is +1 on entering G
    assert res.episode_lengths.sum() <= 40
    assert res.Q.shape == (4, 2) and res.policy.shape == (4,) and res.V.shape == (4,)
    assert "q-learning" in repr(res)


# ---------------------------------------------------------------------------- many seeds at once
@pytest.mark.parametrize("algo", ["q_learning", "sarsa", "expected_sarsa", "td0"])
def test_seeds_equal_separate_runs_bit_for_bit(algo):
    """seeds=[...] (one compiled call, parallel over cores) gives each seed exactly the numbers
    of a call with seed= that seed: Q/V, visits, episode returns and lengths."""
    mdp = catalog.get("frozen-lake", gamma=0.95)
    seeds = [0, 5, 11, 12, 40]
    alpha, eps = tabular.inverse_count(0.8), tabular.linear(0.5, 0.05, 3000)
    if algo == "td0":
        pi = np.full((mdp.n_states, mdp.n_actions), 0.25)

        def call(**kw):
            return tabular.td0_prediction(mdp, pi, 5000, alpha, max_episode_steps=30, **kw)
    else:
        def call(**kw):
            return getattr(tabular, algo)(mdp, 5000, alpha, eps, max_episode_steps=30, **kw)
    many = call(seeds=seeds)
    assert isinstance(many, list) and len(many) == len(seeds)
    for seed, res in zip(seeds, many):
        one = call(seed=seed)
        np.testing.assert_array_equal(res.V, one.V)
        np.testing.assert_array_equal(res.visits, one.visits)
        np.testing.assert_array_equal(res.episode_returns, one.episode_returns)
        np.testing.assert_array_equal(res.episode_lengths, one.episode_lengths)
        assert res.config["seed"] == seed and len(one.episode_returns) > 50
    assert not np.array_equal(many[0].V, many[1].V)
    py = call(seeds=seeds[:2], backend="python")  # the Python path runs the seeds in turn
    np.testing.assert_array_equal(py[1].V, many[1].V)


@pytest.mark.parametrize("first_visit", [True, False])
def test_mc_seeds_equal_separate_runs_bit_for_bit(first_visit):
    """mc_prediction(seeds=[...]) (one parallel compiled call) equals separate calls per seed,
    with or without the progress bar's chunking, and the Python path run seed by seed."""
    mdp = catalog.get("frozen-lake", gamma=0.95)
    pi = np.full((mdp.n_states, mdp.n_actions), 0.25)
    seeds = [0, 3, 17]

    def call(**kw):
        return tabular.mc_prediction(mdp, pi, 400, first_visit=first_visit,
                                     max_episode_steps=40, **kw)
    many = call(seeds=seeds)
    chunked = call(seeds=seeds, progress=True)
    assert isinstance(many, list) and len(many) == len(seeds)
    for k, seed in enumerate(seeds):
        one = call(seed=seed)
        for res in (many[k], chunked[k]):
            np.testing.assert_array_equal(res.V, one.V)
            np.testing.assert_array_equal(res.visits, one.visits)
            np.testing.assert_array_equal(res.episode_returns, one.episode_returns)
            np.testing.assert_array_equal(res.episode_lengths, one.episode_lengths)
            assert res.config["seed"] == seed and res.steps == one.steps
    assert not np.array_equal(many[0].V, many[1].V)
    py = call(seeds=seeds[1:], backend="python")
    np.testing.assert_array_equal(py[0].V, many[1].V)
    with pytest.raises(InputError, match="seed or seeds"):
        call(seed=1, seeds=[2])
    with pytest.raises(InputError, match="trace"):
        call(seeds=[1, 2], trace=True)


def test_seeds_grow_episode_buffers_and_chunk_with_progress():
    mdp = catalog.line_world()
    many = tabular.q_learning(mdp, 80_000, 0.5, 0.3, seeds=[1, 2, 3], progress=True)
    one = tabular.q_learning(mdp, 80_000, 0.5, 0.3, seed=3)
    assert len(one.episode_returns) > 1 << 14  # beyond the first buffer
    np.testing.assert_array_equal(many[2].episode_lengths, one.episode_lengths)
    np.testing.assert_array_equal(many[2].Q, one.Q)


@pytest.mark.parametrize("bad,match", [([], "seeds"), ("01", "seeds"), ([1, -2], "seed"),
                                       ([1.5], "seed")])
def test_bad_seeds_rejected(bad, match):
    with pytest.raises(InputError, match=match):
        tabular.q_learning(catalog.line_world(), 10, 0.1, 0.1, seeds=bad)
    with pytest.raises(InputError, match="seed or seeds"):
        tabular.q_learning(catalog.line_world(), 10, 0.1, 0.1, seed=3, seeds=[1])
    with pytest.raises(InputError, match="trace"):
        tabular.q_learning(catalog.line_world(), 10, 0.1, 0.1, seeds=[1, 2], trace=True)
