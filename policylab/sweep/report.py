"""A sweep's results: one row per configuration over its seeds, learning curves, best preset.

Per configuration: the final metric's IQM and mean over seeds with 95 % stratified-bootstrap
intervals (:func:`policylab.figures.stats.stratified_bootstrap_ci`), steps/s, wall time per
trial, and the count of failed trials (their errors are listed under the table). Written to
``<out>/summary.md`` and ``summary.csv``; the IQM learning curves of every configuration to
``<out>/curves.png``; the best configuration (by IQM and the spec's mode) to ``<out>/best.yaml``,
ready for ``policylab train ALGO --env ENV --config best.yaml``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from policylab.io.checkpoint import atomic_write_bytes
from policylab.sweep.trials import read_status, searched

__all__ = ["summarize"]

COLUMNS = ("config", "params", "seeds", "finished", "failed", "IQM", "IQM 95% CI", "mean", "mean 95% CI",
           "steps/s", "wall s/trial")


def summarize(spec, out, reps: int = 2000, plot: bool = True) -> dict:
    """Collect every trial's status; write summary.md/.csv, curves.png and best.yaml."""
    from policylab.figures.stats import iqm, mean, stratified_bootstrap_ci

    out = Path(out)
    rows, errors, finished_dirs = [], [], []
    configs = ([(cid, e["params"]) for cid, e in searched(out).items()] if spec.searcher
               else spec.configurations())
    for cid, params in configs:
        scores, sps, wall, failed, n_done = [], [], [], 0, 0
        for seed in spec.seeds:
            run_dir = out / "trials" / f"{cid}-s{seed}"
            st = read_status(run_dir) or {}
            if st.get("status") == "failed":
                failed += 1
                errors.append(f"{run_dir.name}: {st.get('error')}")
            elif st.get("status") in ("finished", "stopped"):
                n_done += 1
                if st.get("final_score") is not None:
                    scores.append(st["final_score"])
                    finished_dirs.append(run_dir)
                if st.get("steps_per_second"):
                    sps.append(st["steps_per_second"])
                    wall.append(st["wall_seconds"])
        row = {"config": cid, "params": params, "seeds": len(spec.seeds), "finished": n_done,
               "failed": failed, "scores": scores}
        if scores:
            for name, stat in (("IQM", iqm), ("mean", mean)):
                point, lo, hi = stratified_bootstrap_ci(np.array(scores), stat, reps=reps)
                row[name], row[f"{name} 95% CI"] = float(point), (float(lo), float(hi))
        row["steps/s"] = float(np.mean(sps)) if sps else None
        row["wall s/trial"] = float(np.mean(wall)) if wall else None
        rows.append(row)
    scored = [r for r in rows if "IQM" in r]
    best = None
    if scored:
        best = (max if spec.mode == "max" else min)(scored, key=lambda r: r["IQM"])
    report = {"rows": rows, "errors": errors, "best": best, "files": []}
    report["table"] = _markdown(spec, rows, errors, best)
    atomic_write_bytes(out / "summary.md", report["table"].encode())
    atomic_write_bytes(out / "summary.csv", _csv(rows).encode())
    report["files"] += [out / "summary.md", out / "summary.csv"]
    if best is not None:
        report["files"].append(_write_best(spec, best, out / "best.yaml"))
    if plot and finished_dirs:
        from policylab.figures.curves import learning_curves

        try:
            res = learning_curves(finished_dirs, spec.metric, agg="iqm", reps=min(reps, 500),
                                  out=out / "curves.png")
            report["files"] += list(res.files)
        except ValueError as exc:  # e.g. runs too short to align: the table still stands
            report["errors"].append(f"curves not drawn: {exc}")
    return report


def _fmt(x, ci=False):
    if x is None:
        return "–"
    if ci:
        return f"[{x[0]:.4g}, {x[1]:.4g}]"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _markdown(spec, rows, errors, best) -> str:
    where = f" on {spec.env}" if spec.env else ""
    lines = [f"# Sweep {spec.name}: {spec.kind} {spec.algo}{where}, {spec.steps:,} steps, seeds {spec.seeds}", "",
             f"Final {spec.metric} (mean of the last 10 % of logged values), {spec.mode} is better.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
        cells = [r["config"] + (" **best**" if r is best else ""), params or "(base)", r["seeds"],
                 r["finished"], r["failed"], _fmt(r.get("IQM")), _fmt(r.get("IQM 95% CI"), True),
                 _fmt(r.get("mean")), _fmt(r.get("mean 95% CI"), True), _fmt(r["steps/s"]),
                 _fmt(r["wall s/trial"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if errors:
        lines += ["", "Failed trials:", *[f"- {e}" for e in errors]]
    return "\n".join(lines) + "\n"


def _csv(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["config", "params", "seeds", "finished", "failed", "iqm", "iqm_low", "iqm_high", "mean",
                "mean_low", "mean_high", "steps_per_second", "wall_seconds_per_trial", "scores"])
    for r in rows:
        iqm_ci, mean_ci = r.get("IQM 95% CI") or (None, None), r.get("mean 95% CI") or (None, None)
        w.writerow([r["config"], r["params"], r["seeds"], r["finished"], r["failed"], r.get("IQM"), *iqm_ci,
                    r.get("mean"), *mean_ci, r["steps/s"], r["wall s/trial"], r["scores"]])
    return buf.getvalue()


def _write_best(spec, best, path: Path) -> Path:
    import yaml

    params = spec.run_params(best["params"])
    doc = {spec.algo: params} if spec.kind == "train" else params
    head = (f"# best configuration of sweep {spec.name} ({best['config']}): IQM {best['IQM']:.4g} of "
            f"{spec.metric} over seeds {spec.seeds}\n")
    if spec.kind == "train":
        head += f"# use: policylab train {spec.algo} --env {spec.env} --config {path.name} --steps {spec.steps}\n"
    atomic_write_bytes(path, (head + yaml.safe_dump(doc, sort_keys=True)).encode())
    return path
