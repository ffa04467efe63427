"""Smoke test for benchmarks/ppo_cartpole.py: every side runs, evaluations happen on schedule, and
the table reports what the runs measured (SB3 is the ratio's denominator)."""

import importlib.util
import os
import sys

BENCH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks")


def _load(name):
    sys.path.insert(0, os.path.abspath(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(BENCH, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_ppo_benchmark_sides_and_table():
    bench = _load("ppo_cartpole")
    evaluator = bench.Evaluator(episodes=2)
    runs = {}
    for key in ("sb3", "policylab", "policylab-fast-numpy"):
        r = bench.SIDES[key][2](0, 768, evaluator, 256, 7)
        assert r.steps >= 256 and r.train_s > 0 and r.evals, (key, r)
        assert [s for s, _ in r.evals] == sorted(s for s, _ in r.evals)
        assert all(0 < m <= 500 for _, m in r.evals)
        runs[key] = [r]
    for r in runs.values():  # force "solved" so the table computes medians and ratios
        r[0].solved = True
    text = bench.table(runs)
    assert "Stable-Baselines3" in text and "backend=numpy" in text and "VectorCartPole" in text
    sb3 = runs["sb3"][0].train_s
    ours = runs["policylab-fast-numpy"][0].train_s
    assert f"{ours / sb3:.3f}" in text
