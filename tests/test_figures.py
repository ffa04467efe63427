"""The numbers behind each lecture figure come from the library (checked against independent
computations), and every image is written at the expected pixel size."""

import struct
import subprocess
import sys

import numpy as np
import pytest

from policylab import figures, planning, returns, tabular
from policylab.cli import main
from policylab.mdp import catalog


def png_size(path):
    """(width, height) from the PNG signature + IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("figs")
    return out, {r.name: r for r in figures.render_all(out)}


# ------------------------------------------------------------------ figure 1
def test_fig1_episode_follows_the_line_world():
    mdp = catalog.line_world()
    data = figures.fig1_data()
    names = mdp.state_names
    rows = data["transitions"]
    assert [r[1] for r in rows] == ["s1", "s2", "s3"] and all(r[2] == "right" for r in rows)
    for t, s, a, r, s2, term in rows:
        si, ai, s2i = names.index(s), mdp.action_names.index(a), names.index(s2)
        assert mdp.P[si, ai, s2i] == 1.0
        assert term == bool(mdp.terminal[s2i])
    assert [r[3] for r in rows] == [0.0, 0.0, 1.0] and rows[-1][4] == "G" and rows[-1][5]
    assert set(data["signals"].values()) == {"a_t", "s_{t+1}", "r_{t+1}"}


# ------------------------------------------------------------------ figure 2
@pytest.mark.parametrize("mdp", [catalog.forest(S=3), catalog.line_world(4), catalog.garnet(4, 3, 2, seed=1)],
                         ids=["forest", "line", "garnet"])
def test_fig2_edges_are_the_nonzero_transitions(mdp):
    edges = figures.fig2_data(mdp)["edges"]
    P = mdp.P  # dense (S, A, S)
    expected = {(s, a, s2) for s, a, s2 in zip(*np.nonzero(P)) if not mdp.terminal[s]}
    assert {(s, a, s2) for s, a, s2, _, _ in edges} == expected
    assert len(edges) == len(expected)
    for s, a, s2, p, _ in edges:
        assert p == P[s, a, s2]
    # rewards on the edges reproduce the expected reward R(s, a) = Σ_s' P(s'|s,a) R(s,a,s')
    R = np.zeros((mdp.n_states, mdp.n_actions))
    for s, a, s2, p, r in edges:
        R[s, a] += p * r
    live = ~mdp.terminal
    np.testing.assert_allclose(R[live], mdp.expected_reward[live], atol=1e-12)


def test_fig2_reward_is_written_once_when_it_does_not_depend_on_the_next_state():
    from policylab.figures.lecture import node_rewards

    data = figures.fig2_data()  # forest(S=3): wait in the oldest state pays r1 = 4 whether or not fire strikes
    at_node = node_rewards(data["edges"])
    names = data["action_names"]
    assert at_node[(2, names.index("wait"))] == 4.0 and at_node[(2, names.index("cut"))] == 2.0
    # a reward that does depend on s' stays on the arrows
    P = np.full((2, 1, 2), 0.5)
    R = np.array([[[0.0, 1.0]], [[2.0, 2.0]]])
    from policylab.mdp import TabularMDP

    edges = figures.fig2_data(TabularMDP(P, R, 0.9))["edges"]
    assert node_rewards(edges) == {(1, 0): 2.0}


@pytest.mark.parametrize("mdp", [catalog.forest(S=3), catalog.forest(S=5), catalog.garnet(4, 3, 2, seed=1)])
def test_fig2_arrows_meet_each_state_at_distinct_points(mdp):
    from policylab.figures.lecture import _attach_angles

    rng = np.random.default_rng(0)
    for _ in range(20):
        k = int(rng.integers(1, 9))
        srcs = [(float(rng.normal() * 4), bool(rng.random() < 0.5)) for _ in range(k)]
        ang = np.array(_attach_angles(srcs))
        assert len(set(np.round(ang, 6))) == k                      # no two arrowheads on one point
        assert np.all(np.abs(np.abs(ang) - 90) >= 20)               # clear of the action stems at ±90°
        assert np.all((ang > 0) == np.array([u for _, u in srcs]))  # from above → upper half
    figures.fig2(None, mdp=mdp)                                      # draws without error


def test_fig2_rejects_large_mdps():
    with pytest.raises(ValueError, match="small MDPs"):
        figures.fig2_data(catalog.gridworld_5x5())


# ------------------------------------------------------------------ figure 3
@pytest.mark.parametrize("mdp,state,action", [(None, 1, 0), (catalog.garnet(5, 3, 3, seed=2, gamma=0.8), 2, 1),
                                              (catalog.line_world(3, gamma=0.9), 0, 1)])
def test_fig3_backups_reproduce_planning_values(mdp, state, action):
    data = figures.fig3_data(mdp, state=state, action=action)
    m = catalog.forest(S=3) if mdp is None else mdp
    pi = np.full((m.n_states, m.n_actions), 1.0 / m.n_actions)
    v_pi = planning.evaluate_policy(m, pi)
    opt = planning.value_iteration(m, tol=1e-12)
    assert data["v_pi_backup"] == pytest.approx(v_pi[state], rel=1e-9, abs=1e-9)
    assert data["v_star_backup"] == pytest.approx(opt.V[state], rel=1e-7, abs=1e-7)
    assert data["q_star_backup"] == pytest.approx(opt.Q[state, action], rel=1e-7, abs=1e-7)
    # the drawn tree is the MDP's one-step lookahead
    for a, succ in data["tree"]:
        assert {s2 for s2, _, _ in succ} == set(np.nonzero(m.P[state, a])[0])
        assert sum(p for _, p, _ in succ) == pytest.approx(1.0)


# ------------------------------------------------------------------ figure 4
def test_fig4_is_value_iterations_q_star_and_the_closed_form():
    gammas = (0.0, 0.5, 0.9, 0.99)
    data = figures.fig4_data(gammas, n_states=3)
    assert list(data) == list(gammas)
    n = 3
    for g, Q in data.items():
        np.testing.assert_array_equal(Q, planning.value_iteration(catalog.line_world(3, gamma=g)).Q)
        # V*(s_i) = γ^(n−i); Q*(s_i, right) = γ^(n−i); Q*(s_i, left) = γ V*(s_{i−1}) = γ^(n−i+2) for i > 1,
        # and left from s1 stays in s1: Q*(s1, left) = γ V*(s1) = γ^n
        for i in range(1, n + 1):
            assert Q[i - 1, 1] == pytest.approx(g ** (n - i), abs=1e-7)
            assert Q[i - 1, 0] == pytest.approx(g ** n if i == 1 else g ** (n - i + 2), abs=1e-7)
        assert np.all(Q[n] == 0)


# ------------------------------------------------------------------ figure 5
@pytest.mark.parametrize("seed", [3, 7])
def test_fig5_targets(seed):
    data = figures.fig5_data(seed=seed)
    mdp = catalog.line_world(3, gamma=0.9)
    ep, V, g = data["episode"], data["V"], data["gamma"]
    assert ep[0][0] == 0 and data["terminated"] and mdp.terminal[ep[-1][3]]
    for (s, a, r, s2), nxt in zip(ep, ep[1:] + [None]):
        assert mdp.P[s, a, s2] > 0 and r == (1.0 if mdp.terminal[s2] else 0.0)
        assert nxt is None or nxt[0] == s2
    rewards = np.array([r for _, _, r, _ in ep])
    G = returns.discounted_returns(rewards, g, terminated=np.arange(len(ep)) == len(ep) - 1)
    assert data["G0"] == pytest.approx(G[0], abs=1e-12)
    np.testing.assert_allclose(V, planning.evaluate_policy(mdp, data["policy"]), atol=1e-12)
    assert data["td_target"] == pytest.approx(ep[0][2] + g * V[ep[0][3]])
    assert data["dp_target"] == pytest.approx(V[ep[0][0]], abs=1e-10)  # Bellman expectation equation


# ------------------------------------------------------------------ figure 6
def test_fig6_is_q_learnings_trace():
    kw = {"steps": 12, "alpha": 0.5, "epsilon": 0.5, "seed": 0}
    data = figures.fig6_data(**kw)
    res = tabular.q_learning(catalog.line_world(3, gamma=0.9), trace=True, **kw)
    assert data["trace"].dtype == res.trace.dtype and len(data["trace"]) == 12
    for f in res.trace.dtype.names:
        np.testing.assert_array_equal(data["trace"][f], res.trace[f], err_msg=f)
    tables = data["tables"]
    np.testing.assert_array_equal(tables[-1], res.Q)
    for i, row in enumerate(data["trace"]):
        before, after = tables[i], tables[i + 1]
        changed = np.argwhere(before != after)
        assert all(tuple(c) == (row["s"], row["a"]) for c in changed)
        assert row["q_before"] == before[row["s"], row["a"]] and row["q_after"] == after[row["s"], row["a"]]
        # Q-learning: δ = r + γ (1 − terminated) max_a' Q(s', a') − Q(s, a); Q ← Q + α δ
        boot = 0.0 if row["terminated"] else before[row["s_next"]].max()
        delta = row["r"] + 0.9 * boot - before[row["s"], row["a"]]
        assert row["td_error"] == pytest.approx(delta, abs=1e-12)
        assert row["q_after"] == pytest.approx(row["q_before"] + 0.5 * delta, abs=1e-12)


def test_fig6_draws_the_updates_that_move_q():
    data = figures.fig6_data(steps=24, panels=12)
    tr = data["trace"]
    moved = [i for i in range(len(tr)) if tr[i]["td_error"] != 0]
    assert data["shown"] == moved[:12] and len(data["shown"]) == 12
    assert data["unchanged"] == [i for i in range(len(tr)) if tr[i]["td_error"] == 0]
    assert all(tr[i]["q_after"] != tr[i]["q_before"] for i in data["shown"])


# ------------------------------------------------------------------ images
def test_every_figure_is_written_at_its_size(rendered):
    out, results = rendered
    assert len(results) == 6
    for name, r in results.items():
        assert [f.name for f in r.files] == [f"{name}.png", f"{name}.svg"]
        for f in r.files:
            assert f.parent == out and f.stat().st_size > 5000, f
        w, h = png_size(r.png)
        assert (w, h) == r.size_px
        assert 900 <= w <= 2400 and 450 <= h <= 1400, (name, w, h)
        svg = r.files[1].read_text()
        assert "<svg" in svg and "</svg>" in svg


def test_figure_results_carry_their_data(rendered):
    _, results = rendered
    q = results["fig4_line_world_q_star"].data
    for g, Q in figures.fig4_data().items():
        np.testing.assert_array_equal(q[g], Q)
    assert results["fig2_mdp_state_machine"].data == figures.fig2_data()


def test_figures_cli(tmp_path, capsys):
    assert main(["figures", "--out", str(tmp_path), "--only", "4,1"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fig1_agent_environment_loop.png", "fig1_agent_environment_loop.svg",
        "fig4_line_world_q_star.png", "fig4_line_world_q_star.svg"]
    assert main(["figures", "--out", str(tmp_path), "--only", "7"]) == 2
    assert "numbered 1 to 6" in capsys.readouterr().err


def test_imports_do_not_load_matplotlib():
    code = ("import sys, policylab.figures, policylab.cli.figures, policylab.cli.plot, policylab.cli.tour;"
            "print(sorted(m for m in ('matplotlib', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
