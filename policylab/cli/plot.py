"""``policylab plot RUN_DIRS... --metric NAME [--out FILE] [--agg iqm|mean] [--align interp|strict]``

Learning curves across seeds from each run's ``progress.csv``: the IQM (or mean) over runs with a
stratified-bootstrap confidence band, plus a Markdown final-performance table (IQM, mean, CIs),
printed and written next to the image (FILE.md). Runs are grouped into curves by folder name
without a trailing seed suffix (ppo-s0, ppo-s1 → ppo). Alignment: by default each run is linearly
interpolated onto --points evenly spaced steps over the step range all runs of a group cover (a run
shorter than half the longest is an error naming it); --align strict requires identical logged
steps instead.
"""

from __future__ import annotations


def add_parser(subparsers) -> None:
    import argparse

    from policylab.cli import SUMMARY
    from policylab.config import number

    p = subparsers.add_parser("plot", help=SUMMARY["plot"],
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders with a progress.csv")
    p.add_argument("--metric", default="charts/episodic_return", help="column to plot (default charts/episodic_return)")
    p.add_argument("--out", default=None, help="image file (PNG + SVG + .md table; default curves_<metric>.png)")
    p.add_argument("--agg", choices=["iqm", "mean"], default="iqm", help="aggregate across runs (default iqm)")
    p.add_argument("--align", choices=["interp", "strict"], default="interp", help="step alignment (default interp)")
    p.add_argument("--points", type=number(int, "[2, 100000]"), default=100, help="grid points for --align interp (default 100)")
    p.add_argument("--reps", type=number(int, "[1, 100000]"), default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--alpha", type=number(float, "(0, 1)"), default=0.05, help="1 − confidence level (default 0.05: 95%% CI)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap RNG seed (default 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    import re

    from policylab.cli import writable_file

    out = args.out or "curves_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", args.metric) + ".png"
    writable_file(out, "--out")  # ranges of the numbers were checked while parsing

    from policylab.figures.curves import learning_curves

    res = learning_curves(args.runs, args.metric, agg=args.agg, align=args.align, points=args.points,
                          reps=args.reps, alpha=args.alpha, seed=args.seed, out=out)
    print(res.table)
    print("wrote " + ", ".join(str(f) for f in res.files))
    return 0
