"""`policylab learn`: tables, JSON, traces, and one-line errors with exit code 2."""

import json

import numpy as np
import pytest

from policylab import planning
from policylab.cli import main
from policylab.mdp import catalog


def _json(capsys, argv):
    assert main(argv + ["--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def test_learn_q_learning_line_world_table(capsys):
    assert main(["learn", "q-learning", "--mdp", "line-world", "--steps", "2e4", "--alpha", "0.5",
                 "--epsilon", "0.5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Q(right)" in out and "Q*" in out
    line = next(x for x in out.splitlines() if x.startswith("max |Q - Q*|"))
    assert float(line.split("=")[1].split()[0]) < 1e-9


def test_learn_json_matches_planning(capsys):
    data = _json(capsys, ["learn", "q-learning", "--mdp", "line-world", "--steps", "20000",
                          "--alpha", "0.5", "--epsilon", "0.5", "--seed", "3"])
    plan = planning.value_iteration(catalog.line_world(), tol=1e-12)
    np.testing.assert_allclose(data["Q_star"], plan.Q)
    assert data["max_error"] == pytest.approx(np.abs(np.array(data["Q"]) - plan.Q).max())
    assert data["max_error"] < 1e-9 and data["steps"] == 20000 and data["backend"] == "compiled"
    assert data["config"]["seed"] == 3 and data["policy"][:3] == [1, 1, 1]


@pytest.mark.parametrize("algo", ["td0", "mc"])
def test_learn_prediction_compares_with_exact_v_pi(capsys, algo):
    extra = ["--steps", "200000", "--alpha", "inv:0.6"] if algo == "td0" else ["--steps", "5000"]
    data = _json(capsys, ["learn", algo, "--mdp", "frozen-lake", "--epsilon", "0.2"] + extra)
    mdp = catalog.get("frozen-lake")
    plan = planning.value_iteration(mdp, tol=1e-10)
    pi = np.full((16, 4), 0.05)
    pi[np.arange(16), plan.policy] += 0.8
    V_pi = planning.evaluate_policy(mdp, pi)
    np.testing.assert_allclose(data["V_pi"], V_pi, atol=1e-9)
    assert data["max_error"] == pytest.approx(np.abs(np.array(data["V"]) - V_pi).max())
    assert data["max_error"] < 0.05


@pytest.mark.parametrize("ext", ["csv", "npy"])
def test_learn_writes_trace(tmp_path, capsys, ext):
    path = tmp_path / f"trace.{ext}"
    assert main(["learn", "sarsa", "--mdp", "line-world", "--steps", "300", "--trace", str(path),
                 "--no-progress"]) == 0
    assert "300 updates" in capsys.readouterr().out
    if ext == "npy":
        trace = np.load(path, allow_pickle=False)
        assert len(trace) == 300 and trace["t"][-1] == 299
    else:
        lines = path.read_text().splitlines()
        assert lines[0].startswith("t,episode,s,a,r,s_next") and len(lines) == 301


def test_learn_rows_zero_prints_only_the_summary(capsys):
    assert main(["learn", "q-learning", "--mdp", "gridworld", "--steps", "1e5", "--rows", "0",
                 "--epsilon", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "max |Q - Q*|" in out and "0,0" not in out


def test_learn_shows_progress_bar(capsys):
    assert main(["learn", "expected-sarsa", "--mdp", "cliff-walking", "--steps", "2e5",
                 "--alpha", "0.5"]) == 0
    err = capsys.readouterr().err
    assert "expected-sarsa" in err and "100%" in err


@pytest.mark.parametrize("argv, culprit", [
    (["--steps", "0"], "--steps"), (["--steps", "abc"], "--steps"), (["--steps", "1.5"], "--steps"),
    (["--alpha", "0"], "--alpha"), (["--alpha", "1.5"], "--alpha"), (["--alpha", "lin:1"], "--alpha"),
    (["--epsilon", "-0.1"], "--epsilon"), (["--gamma", "2"], "--gamma"),
    (["--trace", "x.txt"], "--trace"), (["--seed", "-1"], "--seed"),
    (["--max-episode-steps", "0"], "--max-episode-steps"),
])
def test_learn_bad_input_one_line_exit_2(capsys, argv, culprit):
    assert main(["learn", "q-learning", "--mdp", "line-world", "--no-progress"] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and culprit in err and err.startswith("policylab learn: error")


def test_learn_prediction_needs_constant_epsilon(capsys):
    assert main(["learn", "td0", "--epsilon", "1/n", "--no-progress"]) == 2
    assert "--epsilon must be a number" in capsys.readouterr().err


def test_learn_unknown_mdp_is_an_argparse_error(capsys):
    assert main(["learn", "q-learning", "--mdp", "nope"]) == 2
    assert "--mdp" in capsys.readouterr().err


def test_learn_seeds_equal_separate_runs_and_write_run_dirs(tmp_path, capsys):
    """--seeds runs all seeds in one call: each seed's summary equals a --seed run; --out
    writes per-seed progress.csv (readable by `policylab plot`) and result.json."""
    from policylab.figures.curves import load_run

    out = tmp_path / "runs"
    base = ["learn", "mc", "--mdp", "frozen-lake", "--steps", "300", "--no-progress"]
    assert main(base + ["--seeds", "2-3,9", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "3 seeds x 300 episodes" in table and "results ->" in table
    summary = json.loads((out / "summary.json").read_text())["runs"]
    assert [r["config"]["seed"] for r in summary] == [2, 3, 9]
    for r in summary:
        one = _json(capsys, base + ["--seed", str(r["config"]["seed"])])
        assert one["max_error"] == r["max_error"] and one["episodes"] == r["episodes"] == 300
        run = out / f"mc-s{r['config']['seed']}"
        result = json.loads((run / "result.json").read_text())
        assert result["V"] == one["V"]
        steps, returns = load_run(run, "charts/episodic_return")
        assert len(returns) == 300 and steps[-1] == result["steps"]
        assert np.mean(returns[-100:]) == pytest.approx(one["mean_return_last_100"])
    many = _json(capsys, ["learn", "q-learning", "--mdp", "line-world", "--steps", "3000",
                          "--seeds", "0,5"])
    one = _json(capsys, ["learn", "q-learning", "--mdp", "line-world", "--steps", "3000",
                         "--seed", "5"])
    assert [r["config"]["seed"] for r in many["runs"]] == [0, 5] and many["runs"][1]["Q"] == one["Q"]


@pytest.mark.parametrize("argv,culprit", [(["--seeds", "3-x"], "--seeds"), (["--seeds", "1,1"], "--seeds"),
                                          (["--seeds", "1,2", "--seed", "4"], "--seed or --seeds"),
                                          (["--seeds", "1,2", "--trace", "t.csv"], "--trace")])
def test_learn_bad_seeds_one_line_exit_2(capsys, argv, culprit):
    assert main(["learn", "q-learning", "--no-progress"] + argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and culprit in err
