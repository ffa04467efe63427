"""IQM and the stratified bootstrap against direct computations."""

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policylab.figures import iqm, mean, stratified_bootstrap_ci

finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 41), elements=finite))
def test_iqm_equals_scipy_trim_mean(x):
    assert iqm(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25), rel=1e-12, abs=1e-9)


def test_iqm_by_hand():
    # n = 8: drop the 2 lowest and 2 highest → mean(3, 4, 5, 6)
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5
    assert iqm([1.0, 100.0, 2.0]) == pytest.approx(103 / 3)  # n < 4 drops nothing
    np.testing.assert_allclose(iqm(np.array([[1, 2, 3, 100], [0, 0, 0, 4]]), axis=1), [2.5, 0.0])
    with pytest.raises(ValueError, match="at least one"):
        iqm([])


def brute_force_ci(x, stat, reps, alpha, seed):
    """Textbook loop: per replicate, resample runs with replacement inside each task, pool, apply stat."""
    x = np.atleast_2d(np.asarray(x, float))
    n_tasks, n_runs = x.shape
    rng = np.random.default_rng(seed)
    thetas = []
    for _ in range(reps):
        idx = rng.integers(0, n_runs, size=(n_tasks, n_runs))
        sample = [x[t, idx[t, j]] for t in range(n_tasks) for j in range(n_runs)]
        thetas.append(stat(np.array(sample)))
    return stat(x.ravel()), np.quantile(thetas, alpha / 2), np.quantile(thetas, 1 - alpha / 2)


@pytest.mark.parametrize("stat", [iqm, mean], ids=["iqm", "mean"])
@pytest.mark.parametrize("shape", [(10,), (3, 8), (1, 5)])
def test_bootstrap_equals_brute_force(stat, shape):
    x = np.random.default_rng(1).normal(size=shape) * 10
    got = stratified_bootstrap_ci(x, stat, reps=300, alpha=0.1, seed=7)
    want = brute_force_ci(x, stat, 300, 0.1, 7)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_bootstrap_of_a_curve_is_pointwise():
    x = np.random.default_rng(2).normal(size=(2, 6, 4))  # (tasks, runs, K points)
    point, low, high = stratified_bootstrap_ci(x, iqm, reps=200, seed=3)
    assert point.shape == low.shape == high.shape == (4,)
    for k in range(4):
        np.testing.assert_allclose((point[k], low[k], high[k]),
                                   stratified_bootstrap_ci(x[:, :, k], iqm, reps=200, seed=3), rtol=1e-12)
    assert np.all(low <= point + 1e-12) and np.all(point <= high + 1e-12)


def test_single_run_gives_a_degenerate_interval():
    assert stratified_bootstrap_ci([3.5], iqm, reps=50) == (3.5, 3.5, 3.5)
    p, lo, hi = stratified_bootstrap_ci(np.array([[[1.0, 2.0, 3.0]]]), mean, reps=20)
    np.testing.assert_array_equal(p, [1, 2, 3]) and np.testing.assert_array_equal(lo, hi)
    np.testing.assert_array_equal(lo, [1, 2, 3])


def test_interval_narrows_with_more_runs():
    rng = np.random.default_rng(0)
    widths = []
    for n in (5, 80):
        _, lo, hi = stratified_bootstrap_ci(rng.normal(size=n), mean, reps=500, seed=0)
        widths.append(hi - lo)
    # 95% CI of a mean of N(0,1): width ≈ 2·1.96/√n
    assert widths[1] == pytest.approx(2 * 1.96 / np.sqrt(80), rel=0.3)
    assert widths[1] < widths[0]


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        stratified_bootstrap_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="shape"):
        stratified_bootstrap_ci(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="alpha"):
        stratified_bootstrap_ci([1.0, 2.0], alpha=1.5)
    with pytest.raises(ValueError, match="reps"):
        stratified_bootstrap_ci([1.0, 2.0], reps=0)
