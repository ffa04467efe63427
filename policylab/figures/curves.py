"""Learning curves across seeds: read run logs, align them by env step, aggregate (IQM or mean)
with stratified-bootstrap confidence intervals, plot, and tabulate final performance in Markdown.

Run logs are the ``progress.csv`` files written by ``policylab.io.RunLogger`` (``policylab train
... --out runs/NAME``): a step column (``global_step``, or ``step``) and one column per metric,
e.g. ``charts/episodic_return``; an empty cell means the metric was not logged in that row.

Alignment (``align=``):

- ``"interp"`` (default): each run's curve is linearly interpolated onto ``points`` evenly spaced
  steps over the range every run covers, [max_i first_step_i, min_i last_step_i]. Runs need not log
  the same steps (different rollout sizes, rows where no episode ended). A run whose last step is
  below ``min_overlap`` × the longest run's last step is an error naming that run (comparing over
  the common range would silently cut the other curves short).
- ``"strict"``: every run must log the metric at exactly the same steps (same config, seeds only
  differ); otherwise an error names the first run that differs. No interpolation.

Runs are grouped into curves by folder name with a trailing seed suffix removed
(``ppo-s0``, ``ppo_seed1``, ``ppo-2`` → ``ppo``); each group is one curve and one table row. A run's
final score is the mean of its aligned curve over the last ``final_fraction`` of the grid.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from policylab.errors import InputError, MissingFileError
from policylab.figures.stats import AGGREGATES, stratified_bootstrap_ci

__all__ = [
    "STEP_COLUMNS",
    "CurveResult",
    "align_runs",
    "final_table",
    "group_runs",
    "learning_curves",
    "load_run",
]

STEP_COLUMNS = ("global_step", "step")
_SEED_SUFFIX = re.compile(r"[-_.](?:s|seed)?\d+$")


def load_run(run_dir, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``metric`` from ``run_dir/progress.csv`` (or a CSV file given directly),
    rows with an empty cell dropped. Errors name the run and what is wrong."""
    path = Path(run_dir)
    csv_path = path / "progress.csv" if path.is_dir() else path
    if not path.exists():
        raise MissingFileError(f"run {str(run_dir)!r} does not exist")
    if not csv_path.is_file():
        raise InputError(f"run {str(run_dir)!r} has no progress.csv (empty or not a run directory)")
    with csv_path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        rows = [r for r in reader if r]
    if not header or not rows:
        raise InputError(f"run {str(run_dir)!r}: {csv_path.name} has no logged rows")
    step_col = next((c for c in STEP_COLUMNS if c in header), None)
    if step_col is None:
        raise InputError(f"run {str(run_dir)!r}: {csv_path.name} has no step column ({' or '.join(STEP_COLUMNS)})")
    if metric not in header:
        known = [c for c in header if c not in STEP_COLUMNS]
        raise InputError(f"run {str(run_dir)!r} did not log metric {metric!r}; it logged: {', '.join(known)}")
    i_step, i_metric = header.index(step_col), header.index(metric)
    steps, values = [], []
    for n, row in enumerate(rows, start=2):
        cell = row[i_metric].strip() if i_metric < len(row) else ""
        if cell == "":
            continue
        try:
            steps.append(float(row[i_step]))
            values.append(float(cell))
        except ValueError:
            raise InputError(f"run {str(run_dir)!r}: line {n} of {csv_path.name} is not numeric") from None
    if not values:
        raise InputError(f"run {str(run_dir)!r} logged metric {metric!r} in no row (all cells empty)")
    steps, values = np.asarray(steps), np.asarray(values)
    if not np.all(np.isfinite(values)):
        raise InputError(f"run {str(run_dir)!r}: metric {metric!r} has NaN or inf values")
    if np.any(np.diff(steps) <= 0):
        raise InputError(f"run {str(run_dir)!r}: steps are not increasing (mixed or resumed logs?)")
    return steps, values


def group_runs(run_dirs) -> dict[str, list[str]]:
    """Group run folders by name without a trailing seed suffix, keeping the given order."""
    groups: dict[str, list[str]] = {}
    for r in run_dirs:
        name = Path(r).resolve().name if Path(r).name in ("", ".") else Path(r).name
        groups.setdefault(_SEED_SUFFIX.sub("", name) or name, []).append(str(r))
    return groups


def align_runs(curves: dict[str, tuple[np.ndarray, np.ndarray]], align: str = "interp", points: int = 100,
               min_overlap: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Put runs on one step grid (see the module docstring): returns (grid (K,), Y (n_runs, K))."""
    if not curves:
        raise InputError("no runs given")
    names = list(curves)
    if align == "strict":
        ref_name, (ref_steps, _) = names[0], curves[names[0]]
        for n in names[1:]:
            st = curves[n][0]
            if len(st) != len(ref_steps) or not np.array_equal(st, ref_steps):
                raise InputError(f"run {n!r} logged {len(st)} points (steps {st[0]:g}..{st[-1]:g}) but run "
                                 f"{ref_name!r} logged {len(ref_steps)} (steps {ref_steps[0]:g}..{ref_steps[-1]:g}); "
                                 "use --align interp to interpolate onto a common grid")
        return ref_steps.copy(), np.stack([curves[n][1] for n in names])
    if align != "interp":
        raise InputError(f"align must be 'interp' or 'strict', got {align!r}")
    if points < 2:
        raise InputError(f"points must be >= 2, got {points}")
    lasts = {n: c[0][-1] for n, c in curves.items()}
    longest = max(lasts, key=lasts.get)
    for n in names:
        if lasts[n] < min_overlap * lasts[longest]:
            raise InputError(f"run {n!r} ends at step {lasts[n]:g} but run {longest!r} reaches step "
                             f"{lasts[longest]:g}: lengths differ too much to compare (interrupted run?)")
    lo = max(c[0][0] for c in curves.values())
    hi = min(lasts.values())
    if hi <= lo:
        if len(curves) == 1 or all(len(c[0]) == 1 for c in curves.values()):
            grid = np.array([hi])
            return grid, np.stack([np.interp(grid, *curves[n]) for n in names])
        raise InputError(f"runs share no step range: the latest first step is {lo:g}, the earliest last step "
                         f"{hi:g} (run {min(lasts, key=lasts.get)!r})")
    grid = np.linspace(lo, hi, points)                                       # (K,)
    return grid, np.stack([np.interp(grid, *curves[n]) for n in names])     # (n_runs, K)


@dataclass
class CurveResult:
    """Per group: grid (K,), Y (n_runs, K), point/low/high (K,), final (n_runs,) and final stats."""

    metric: str
    agg: str
    groups: dict = field(default_factory=dict)
    table: str = ""
    files: list = field(default_factory=list)


def _ci(x, stat, reps, alpha, seed):
    return stratified_bootstrap_ci(x, stat, reps=reps, alpha=alpha, seed=seed)


def learning_curves(run_dirs, metric: str, agg: str = "iqm", align: str = "interp", points: int = 100,
                    reps: int = 2000, alpha: float = 0.05, seed: int = 0, final_fraction: float = 0.1,
                    out=None, min_overlap: float = 0.5) -> CurveResult:
    """Read, align, aggregate and (if ``out``) plot the runs' ``metric``; returns a CurveResult
    whose ``table`` is the Markdown final-performance table (IQM, mean, CIs) per group.
    ``min_overlap`` as in :func:`align_runs` (0 accepts runs that stopped early, e.g. once solved)."""
    if agg not in AGGREGATES:
        raise InputError(f"agg must be one of {sorted(AGGREGATES)}, got {agg!r}")
    if not 0 < final_fraction <= 1:
        raise InputError(f"final_fraction must be in (0, 1], got {final_fraction}")
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise InputError("no run directories given")
    curves = {str(r): load_run(r, metric) for r in run_dirs}           # every run checked before any work
    res = CurveResult(metric, agg)
    for name, members in group_runs(run_dirs).items():
        grid, Y = align_runs({m: curves[m] for m in members}, align, points, min_overlap)   # (K,), (n, K)
        point, low, high = _ci(Y[None], AGGREGATES[agg], reps, alpha, seed)    # (K,) each
        k = max(1, math.ceil(final_fraction * len(grid)))
        final = Y[:, -k:].mean(axis=1)                                          # (n,)
        stats = {a: _ci(final, f, reps, alpha, seed) for a, f in AGGREGATES.items()}
        res.groups[name] = {"runs": members, "grid": grid, "Y": Y, "point": point, "low": low, "high": high, "final": final,
                                "final_stats": stats}
    res.table = final_table(res, alpha)
    if out is not None:
        res.files = _plot(res, out, alpha)
    return res


def final_table(res: CurveResult, alpha: float = 0.05) -> str:
    """Markdown: | group | runs | final steps | IQM | IQM CI | mean | mean CI |."""
    pct = f"{100 * (1 - alpha):g}%"
    lines = [f"Final `{res.metric}` (mean over the last part of each aligned run; {pct} stratified-bootstrap CI)",
             "", f"| runs | n | steps | IQM | IQM {pct} CI | mean | mean {pct} CI |", "|---|---|---|---|---|---|---|"]
    for name, g in res.groups.items():
        (ip, il, ih), (mp, ml, mh) = g["final_stats"]["iqm"], g["final_stats"]["mean"]
        lines.append(f"| {name} | {len(g['runs'])} | {g['grid'][-1]:.6g} | {ip:.4g} | [{il:.4g}, {ih:.4g}] | "
                     f"{mp:.4g} | [{ml:.4g}, {mh:.4g}] |")
    return "\n".join(lines) + "\n"


def _plot(res: CurveResult, out, alpha) -> list[Path]:
    from policylab.figures import _draw as d

    fig = d.new_figure(7.5, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    for name, g in res.groups.items():
        n = len(g["runs"])
        (line,) = ax.plot(g["grid"], g["point"], lw=1.8, label=f"{name} ({n} run{'s' if n > 1 else ''})",
                          marker="o" if len(g["grid"]) == 1 else None)
        ax.fill_between(g["grid"], g["low"], g["high"], color=line.get_color(), alpha=0.25, lw=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(res.metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    ax.set_title(f"{res.agg.upper()} across runs, {100 * (1 - alpha):g}% stratified-bootstrap CI", fontsize=11)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.9)
    out = Path(out)
    stem = out.with_suffix("")
    result = d.finish(fig, stem.name, "", "", None, stem.parent)
    md = stem.with_suffix(".md")
    md.write_text(res.table)
    return [*result.files, md]
