"""`policylab plot`: reading run logs, alignment, aggregation, table, image, and bad input."""

import struct

import numpy as np
import pytest

from policylab.cli import main
from policylab.figures import iqm, stratified_bootstrap_ci
from policylab.figures.curves import align_runs, group_runs, learning_curves, load_run
from policylab.io import RunLogger

METRIC = "charts/episodic_return"


def write_run(path, steps, values, metric=METRIC):
    """A run log in the trainers' format (policylab.io.RunLogger → progress.csv); None = not logged."""
    log = RunLogger(path, tensorboard=False)
    for s, v in zip(steps, values):
        log.log(int(s), {metric: v, "losses/value_loss": 1.0})
    log.close()
    return path


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for seed, n in enumerate([20, 22, 25]):  # different lengths and step sizes
        steps = np.arange(1, n + 1) * (100 + 10 * seed)
        vals = [None if (seed == 1 and i == 0) else float(s / 10 + rng.normal()) for i, s in enumerate(steps)]
        out.append(str(write_run(tmp_path / f"ppo-s{seed}", steps, vals)))
    return out


def test_load_run_reads_the_trainers_csv(runs):
    steps, _vals = load_run(runs[1], METRIC)
    assert steps[0] == 220 and len(steps) == 21  # the row without an episode is skipped
    assert np.all(np.diff(steps) > 0)


def test_interp_alignment_and_aggregation_match_a_direct_computation(runs):
    res = learning_curves(runs, METRIC, agg="mean", points=30, reps=200, seed=4)
    g = res.groups["ppo"]
    raw = [load_run(r, METRIC) for r in runs]
    lo, hi = max(s[0] for s, _ in raw), min(s[-1] for s, _ in raw)
    grid = np.linspace(lo, hi, 30)
    Y = np.stack([np.interp(grid, s, v) for s, v in raw])
    np.testing.assert_allclose(g["grid"], grid)
    np.testing.assert_allclose(g["Y"], Y)
    np.testing.assert_allclose(g["point"], Y.mean(axis=0))
    assert np.all(g["low"] <= g["point"] + 1e-12) and np.all(g["high"] >= g["point"] - 1e-12)
    final = Y[:, -3:].mean(axis=1)  # last 10% of 30 points
    np.testing.assert_allclose(g["final"], final)
    p, low, high = stratified_bootstrap_ci(final, iqm, reps=200, seed=4)
    assert g["final_stats"]["iqm"] == (p, low, high)
    assert f"| ppo | 3 | {grid[-1]:.6g} | {p:.4g} | [{low:.4g}, {high:.4g}] |" in res.table


def test_strict_alignment_keeps_the_logged_points(tmp_path):
    steps = [10, 20, 30]
    a = write_run(tmp_path / "a-1", steps, [1.0, 2.0, 3.0])
    b = write_run(tmp_path / "a-2", steps, [3.0, 4.0, 5.0])
    grid, Y = align_runs({r: load_run(r, METRIC) for r in (a, b)}, "strict")
    np.testing.assert_array_equal(grid, steps)
    np.testing.assert_array_equal(Y, [[1, 2, 3], [3, 4, 5]])


def test_grouping_by_name_without_seed_suffix():
    groups = group_runs(["r/ppo-s0", "r/a2c_seed1", "r/ppo-s1", "r/a2c_seed2", "r/dqn"])
    assert groups == {"ppo": ["r/ppo-s0", "r/ppo-s1"], "a2c": ["r/a2c_seed1", "r/a2c_seed2"], "dqn": ["r/dqn"]}


def test_single_seed_gives_a_degenerate_band_and_an_image(tmp_path, capsys):
    run = write_run(tmp_path / "solo", [100, 200, 300], [1.0, 5.0, 9.0])
    out = tmp_path / "curve.png"
    assert main(["plot", str(run), "--metric", METRIC, "--out", str(out), "--reps", "50"]) == 0
    res = learning_curves([run], METRIC, reps=50)
    g = res.groups["solo"]
    np.testing.assert_array_equal(g["low"], g["point"])
    np.testing.assert_array_equal(g["high"], g["point"])
    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1125, 675)
    assert out.with_suffix(".svg").stat().st_size > 0
    table = out.with_suffix(".md").read_text()
    assert "| solo | 1 |" in table and table in capsys.readouterr().out


def error_of(capsys, argv):
    assert main(argv) == 2
    return capsys.readouterr().err


def test_bad_inputs_name_the_culprit(tmp_path, capsys, runs):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    err = error_of(capsys, ["plot", runs[0], str(empty)])
    assert "empty-run" in err and "no progress.csv" in err
    header_only = tmp_path / "header-only"
    header_only.mkdir()
    (header_only / "progress.csv").write_text("global_step,charts/episodic_return\n")
    assert "header-only" in error_of(capsys, ["plot", str(header_only)])
    err = error_of(capsys, ["plot", runs[0], "--metric", "charts/nope"])
    assert "ppo-s0" in err and "charts/nope" in err and "losses/value_loss" in err
    other = write_run(tmp_path / "ppo-s9", [100, 200], [1.0, 2.0], metric="losses/other")
    err = error_of(capsys, ["plot", runs[0], str(other)])
    assert "ppo-s9" in err and METRIC in err
    err = error_of(capsys, ["plot", *runs, "--align", "strict"])
    assert "ppo-s1" in err and "--align interp" in err
    short = write_run(tmp_path / "ppo-s7", [100, 200, 300], [1.0, 2.0, 3.0])
    err = error_of(capsys, ["plot", runs[0], str(short)])
    assert "ppo-s7" in err and "ends at step 300" in err
    assert "does not exist" in error_of(capsys, ["plot", str(tmp_path / "missing")])
    never = write_run(tmp_path / "never", [100, 200], [None, None])
    assert "in no row" in error_of(capsys, ["plot", str(never)])


def test_runs_that_stopped_early_align_over_their_common_range_when_asked(tmp_path):
    """The tour's PPO seeds stop once solved (14k vs 30k steps): refused by default, curved over the
    common range with min_overlap=0."""
    write_run(tmp_path / "ppo-s0", np.arange(1, 15) * 1000, np.linspace(10, 500, 14))
    write_run(tmp_path / "ppo-s1", np.arange(1, 31) * 1000, np.linspace(10, 500, 30))
    dirs = [tmp_path / "ppo-s0", tmp_path / "ppo-s1"]
    with pytest.raises(ValueError, match="lengths differ"):
        learning_curves(dirs, METRIC)
    res = learning_curves(dirs, METRIC, min_overlap=0.0, points=14)
    assert list(res.groups) == ["ppo"] and "ppo" in res.table
