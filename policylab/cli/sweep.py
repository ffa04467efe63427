"""``policylab sweep SPEC.yaml [--out DIR] [--num-cpus N | --address ADDR] [--report]``

Runs every (configuration, seed) trial of a sweep spec on Ray Tune — a local Ray instance by
default (one trial per CPU), or a running cluster with ``--address auto`` / ``ray://HOST:10001``
— then prints the table (final metric IQM and mean with 95 % bootstrap CIs over seeds, steps/s,
wall time, failed trials) and writes ``summary.md``, ``summary.csv``, ``curves.png`` and the best
configuration as ``best.yaml`` to ``--out`` (default ``sweeps/<name>``). Each trial is an ordinary
run directory under ``--out/trials`` (``policylab eval``/``plot`` work on it). Re-running the same
spec into the same folder runs only the missing or unfinished trials. ``--report`` only rewrites
the table from what is there now. Needs the ``sweep`` extra: ``pip install -e ".[deep,sweep]"``.
"""

from __future__ import annotations


def add_parser(subparsers) -> None:
    import argparse

    from policylab.config import number

    p = subparsers.add_parser("sweep", help="seeds × hyperparameters on Ray Tune (local or a cluster)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="sweep spec (YAML), e.g. configs/sweeps/ppo_cartpole.yaml")
    p.add_argument("--out", default=None, help="output folder (default sweeps/<spec name>)")
    p.add_argument("--num-cpus", type=number(int, "[1, 4096]"), default=None, metavar="N",
                   help="local Ray: CPUs = trials at once, in [1, 4096] (default: all cores)")
    p.add_argument("--address", default=None,
                   help="join a running Ray cluster: auto, HOST:6379 or ray://HOST:10001")
    p.add_argument("--report", action="store_true", help="only (re)write the report from finished trials")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from policylab.cli import writable_dir
    from policylab.errors import UsageError
    from policylab.sweep.spec import load_spec

    spec = load_spec(args.spec)  # every check before Ray starts
    out = Path(args.out) if args.out else Path("sweeps") / spec.name
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is an existing file, not a folder")
    if args.report:
        from policylab.sweep.report import summarize

        if not (out / "trials").is_dir():
            raise UsageError(f"--report: no sweep in {out}")
        report = summarize(spec, out)
    else:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError('policylab sweep needs Ray Tune: pip install -e ".[sweep]"') from None
        from policylab.sweep.runner import SweepInterrupted, pending_trials
        from policylab.sweep.runner import run as run_sweep

        writable_dir(out, "--out")
        if spec.searcher is None:
            total, todo = len(spec.trials()), len(pending_trials(spec, out.resolve()))
            print(f"sweep {spec.name}: {total} trials ({total - todo} already done) -> {out}", flush=True)
        else:
            print(f"sweep {spec.name}: {spec.num_samples} configurations proposed by {spec.searcher}, "
                  f"each on {len(spec.seeds)} seeds -> {out}", flush=True)
        try:
            report = run_sweep(spec, out, num_cpus=args.num_cpus, address=args.address)
        except SweepInterrupted as stop:
            import sys

            print(stop.report["table"], end="")
            finished = sum(r["finished"] + r["failed"] for r in stop.report["rows"])
            total = len(spec.seeds) * spec.num_samples if spec.searcher else len(spec.trials())
            print(f"policylab sweep: interrupted with {finished} of {total} trials done; run the same "
                  "command again to run the rest (an unfinished trial resumes from its checkpoint)", file=sys.stderr)
            return 130
    print(report["table"], end="")
    print("wrote " + ", ".join(str(f) for f in report["files"]))
    return 0
