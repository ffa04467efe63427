"""`policylab bench NAME [ARGS...]`: run a side-by-side benchmark script from benchmarks/.

The scripts live in the source checkout (they import peer libraries from the `bench` extra,
which the installed package does not need). Extra arguments are passed to the script.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from policylab.errors import MissingFileError

SCRIPTS = {
    "planning": "planning.py",
    "tabular": "tabular.py",
    "ppo": "ppo_cartpole.py",
    "gae": "gae.py",
    "llm": "llm.py",
    "dpo": "llm.py --only dpo",
    "grpo": "llm.py --only grpo",
}


def add_parser(sub) -> None:
    from policylab.cli import SUMMARY

    p = sub.add_parser("bench", help=SUMMARY["bench"],
                       description="Run benchmarks/<name>.py; extra arguments go to the script.")
    p.add_argument("name", choices=sorted(SCRIPTS), help="which benchmark")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script (e.g. --quick)")
    p.set_defaults(func=run)


def benchmarks_dir() -> Path:
    """benchmarks/ next to the package in a source checkout, or $POLICYLAB_BENCHMARKS."""
    env = os.environ.get("POLICYLAB_BENCHMARKS")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "benchmarks", Path.cwd() / "benchmarks"]
    for c in candidates:
        if c.is_dir():
            return c
    raise MissingFileError("benchmarks/ not found: run from the policylab source checkout "
                            "or set POLICYLAB_BENCHMARKS")


def run(args) -> int:
    script, *fixed = SCRIPTS[args.name].split()
    path = benchmarks_dir() / script
    if not path.is_file():
        raise MissingFileError(f"benchmark script {path} is missing")
    cmd = [sys.executable, str(path), *fixed, *args.args]
    print("$ " + " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)
