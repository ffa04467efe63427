"""Smoke test for benchmarks/planning.py: its core runs at S=200 and its numbers are right."""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks")


def _load(name):
    sys.path.insert(0, os.path.abspath(BENCH))
    path = os.path.join(BENCH, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _load("planning")


def test_compare_small_garnet_all_methods(bench):
    tol = 1e-6
    rows, notes = bench.compare(200, tol=tol, repeat=1, peer=True, log=lambda m: None)
    by = {r["method"]: r for r in rows}
    assert set(by) == {"policylab", "numpy loop", "pymdptoolbox"}
    # policylab and the numpy loop both guarantee ‖V − V*‖∞ ≤ tol; the reference is tight.
    assert notes["ref_check"] < 1e-8
    assert by["policylab"]["err"] <= tol
    assert by["numpy loop"]["err"] <= tol
    # The span rule needs far fewer sweeps than the sup-norm rule at γ = 0.99.
    assert by["policylab"]["iterations"] < by["numpy loop"]["iterations"] / 10
    # pymdptoolbox's span stop gives the optimal policy but V off by a near-constant.
    assert by["pymdptoolbox"]["policy_diff"] == 0
    assert by["pymdptoolbox"]["err"] > 1.0
    assert all(r["policy_diff"] == 0 for r in rows)
    assert by["policylab"]["ratio_solve"] == 1.0
    table = bench.format_rows(rows)
    assert table.count("\n") == 2 + len(rows) - 1 and "pymdptoolbox" in table


def test_numpy_loop_matches_policy_iteration(bench):
    from policylab import planning
    from policylab.mdp import catalog

    mdp = catalog.garnet(50, 3, 5, seed=1, gamma=0.9)
    V, Q, _ = bench.numpy_value_iteration(mdp.transition_matrix(), mdp.expected_reward, 0.9, 1e-9)
    ref = planning.policy_iteration(mdp)
    assert np.abs(V - ref.V).max() <= 1e-9
    np.testing.assert_array_equal(Q.argmax(axis=1), ref.policy)


def test_toolbox_inputs_layout(bench):
    from policylab.mdp import catalog

    mdp = catalog.garnet(30, 4, 3, seed=2, gamma=0.9, sparse=True)
    P, R = bench.toolbox_inputs(mdp)
    assert len(P) == 4 and P[0].shape == (30, 30)
    for a in range(4):
        np.testing.assert_array_equal(P[a].toarray(), mdp.P.toarray()[a::4])
    np.testing.assert_array_equal(R, mdp.expected_reward)


def test_headline_subprocess_reports_rss(bench):
    h = bench.headline(S=2000, A=4, b=4, seed=0, tol=1e-6)
    assert h["converged"] and h["bound"] <= 1e-6 and h["nnz"] == 2000 * 4 * 4
    assert 10.0 < h["peak_rss_mib"] < 4096.0
    assert "| 2,000 |" in bench.format_headline(h)
    json.dumps(h)


def test_markdown_table_and_best_of():
    common = _load("_common")
    t = common.markdown_table(["name", "x"], [["a", 1.5], ["bb", 10]])
    assert t.splitlines() == ["| name |   x |", "|------|----:|",
                              "| a    | 1.5 |", "| bb   |  10 |"]
    with pytest.raises(ValueError, match="2 headers"):
        common.markdown_table(["a", "b"], [[1]])
    calls = []
    out = common.best_of_interleaved({"f": lambda: calls.append("f") or 1,
                                      "g": lambda: calls.append("g") or 2}, repeat=2)
    assert calls == ["f", "g", "f", "g"]
    assert out["f"][2:] == (1, 2) and out["g"][2:] == (2, 2)
    assert 0.0 <= out["f"].wall < 1.0 and 0.0 <= out["f"].cpu < 1.0
    assert "numpy" in common.machine_info() and common.peak_rss_mib() > 1.0


def test_profile_variants_agree_with_policylab(bench):
    from policylab import planning
    from policylab.mdp import catalog

    mdp = catalog.garnet(300, 4, 4, seed=3, gamma=0.99, sparse=True)
    ref = planning.value_iteration(mdp, tol=1e-8)
    V, k = bench.proposed_value_iteration(mdp, 1e-8)
    assert k == ref.iterations and np.abs(V - ref.V).max() < 1e-10
    V, k = bench.numba_value_iteration(mdp, 1e-8, bench._numba_sweep())
    assert k == ref.iterations and np.abs(V - ref.V).max() < 1e-10
    table = bench.profile(300, 4, 4, repeat=1)
    assert table.count("\n| ") == 6 and "numba fused sweep" in table


def test_dense_compare_small(bench):
    pytest.importorskip("mdptoolbox")
    rows, notes = bench.dense_compare(60, 3, 4, tol=1e-6, repeat=1, log=lambda m: None)
    by = {r["method"]: r for r in rows}
    assert by["policylab"]["err"] <= 1e-6 and by["policylab"]["policy_diff"] == 0
    assert by["pymdptoolbox PolicyIteration"]["err"] < 1e-8
    assert all(r["policy_diff"] == 0 for r in rows) and not notes["csr"]  # 43k entries: dense
    assert "ratio CPU" in bench.format_dense(rows)
