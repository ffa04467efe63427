"""``policylab figures --out DIR [--only 1,4]``: the lecture's six figures as PNG + SVG.

1 agent–environment loop · 2 an MDP as a finite-state machine · 3 planning backup diagrams ·
4 the line world's Q* for several γ · 5 learning backup diagrams (MC, TD(0), DP) ·
6 Q-learning on the line world, update by update. Every number is computed by the library.
"""

from __future__ import annotations


def add_parser(subparsers) -> None:
    from policylab.cli import SUMMARY

    p = subparsers.add_parser("figures", help=SUMMARY["figures"], description=__doc__)
    p.add_argument("--out", default="figures", help="output folder (default figures/)")
    p.add_argument("--only", default=None, metavar="N,N", help="comma-separated figure numbers (default: all)")
    p.set_defaults(func=run)


def parse_only(text: str | None) -> list[int] | None:
    from policylab.cli import UsageError

    if text is None:
        return None
    try:
        which = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--only expects figure numbers like 1,4, got {text!r}") from None
    bad = [n for n in which if not 1 <= n <= 6]
    if bad or not which:
        raise UsageError(f"--only: figures are numbered 1 to 6, got {text!r}")
    return which


def run(args) -> int:
    from policylab.cli import writable_dir

    which = parse_only(args.only)
    writable_dir(args.out, "--out")

    from policylab.figures import render_all

    results = render_all(args.out, which, progress=True)
    for r in results:
        print(f"{r.title}: " + ", ".join(str(f) for f in r.files))
    return 0
