"""Aggregate scores across seeds: interquartile mean and stratified-bootstrap confidence intervals
(Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice"). Pure numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from policylab.errors import InputError

__all__ = ["AGGREGATES", "iqm", "mean", "stratified_bootstrap_ci"]


def iqm(x, axis: int = -1) -> np.ndarray:
    """Interquartile mean: IQM(x) = mean of the middle 50 % of the sorted scores.

    With n scores sorted x₍₁₎ ≤ … ≤ x₍ₙ₎, each of the n/4 lowest and n/4 highest scores is dropped
    (n/4 rounded down, as ``scipy.stats.trim_mean(x, 0.25)``): IQM = mean(x₍⌊n/4⌋+1₎ … x₍ₙ−⌊n/4⌋₎).
    n < 4 drops nothing (IQM = mean). Works along ``axis`` (default last).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[axis] == 0:
        raise InputError(f"iqm needs at least one score along axis {axis}, got shape {x.shape}")
    n = x.shape[axis]
    cut = n // 4
    s = np.sort(x, axis=axis)
    return np.take(s, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def mean(x, axis: int = -1) -> np.ndarray:
    """Arithmetic mean along ``axis``: (1/n) Σᵢ xᵢ."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[axis] == 0:
        raise InputError(f"mean needs at least one score along axis {axis}, got shape {x.shape}")
    return x.mean(axis=axis)


#: Aggregate statistics by CLI name (``policylab plot --agg``).
AGGREGATES: dict[str, Callable] = {"iqm": iqm, "mean": mean}


def stratified_bootstrap_ci(scores, stat: Callable = iqm, reps: int = 2000, alpha: float = 0.05,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile confidence interval of ``stat`` by the stratified bootstrap.

    ``scores`` is (n_runs,) or (n_tasks, n_runs) (tasks = strata) or (n_tasks, n_runs, K) for K
    points (e.g. steps of a curve). Each replicate b resamples, independently within every task,
    n_runs runs with replacement, rng = ``np.random.default_rng(seed)`` drawing one
    ``rng.integers(0, n_runs, size=(n_tasks, n_runs))`` per replicate in order:

        θ*_b = stat(x*_b),   CI = [quantile_{α/2}(θ*), quantile_{1−α/2}(θ*)]

    where ``stat`` reduces the pooled (n_tasks·n_runs,) scores of a replicate (axis −1 for K = 1;
    for K > 1 the runs axis is moved last). Returns (point, low, high), each () or (K,).
    A single run gives low = point = high (every replicate is that run).
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[0] < 1 or x.shape[1] < 1:
        raise InputError(f"scores must be (n_runs,), (n_tasks, n_runs) or (n_tasks, n_runs, K) with "
                         f"n_tasks, n_runs >= 1, got shape {np.shape(scores)}")
    if not np.all(np.isfinite(x)):
        raise InputError("scores contain NaN or inf")
    if not (isinstance(reps, (int, np.integer)) and reps >= 1):
        raise InputError(f"reps must be a positive int, got {reps!r}")
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be in (0, 1), got {alpha}")
    n_tasks, n_runs, K = x.shape
    pooled = lambda y: stat(np.moveaxis(y, 2, 0).reshape(K, n_tasks * n_runs), axis=-1)  # (K,)
    point = pooled(x)
    rng = np.random.default_rng(seed)
    rows = np.arange(n_tasks)[:, None]
    thetas = np.empty((reps, K))
    for b in range(reps):
        idx = rng.integers(0, n_runs, size=(n_tasks, n_runs))   # (n_tasks, n_runs)
        thetas[b] = pooled(x[rows, idx])                        # (n_tasks, n_runs, K) → (K,)
    low, high = np.quantile(thetas, [alpha / 2, 1 - alpha / 2], axis=0)
    squeeze = (lambda a: a[0]) if K == 1 and np.ndim(scores) < 3 else (lambda a: a)
    return squeeze(point), squeeze(low), squeeze(high)
