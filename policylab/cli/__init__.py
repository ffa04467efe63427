"""The `policylab` command: one entry point, one module per subcommand.

Each subcommand lives in ``policylab/cli/<name>.py`` and exposes
``add_parser(subparsers)``, which registers the subcommand and sets
``func=run`` with ``run(args) -> int``. Modules must not import torch or
transformers at import time (``import torch`` costs ~1 s): import heavy
libraries inside ``run``.

Bad input raises a :class:`policylab.errors.PolicylabError`; ``main`` prints it as one line and
exits with code 2. Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Order = order in `policylab --help`.
SUBCOMMANDS = ["plan", "learn", "train", "eval", "llm", "sweep", "figures", "plot", "tour", "bench"]


from policylab.errors import PolicylabError, UsageError


def parse_count(text: str, flag: str = "--steps") -> int:
    """A positive whole number written as 100000, 1e5 or 1_000; UsageError naming ``flag`` otherwise."""
    try:
        value = float(str(text).replace("_", ""))
    except ValueError:
        raise UsageError(f"{flag} must be a positive whole number, got {text!r}") from None
    if not (value >= 1) or value == float("inf") or value != int(value):
        raise UsageError(f"{flag} must be a positive whole number, got {text!r}")
    return int(value)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2 (no usage dump)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="policylab",
        description="Reinforcement learning from MDPs to GRPO/DPO.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"policylab.cli.{name}")
        except ModuleNotFoundError as exc:  # subcommand not built yet
            if exc.name != f"policylab.cli.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PolicylabError as exc:  # a user mistake: one line, exit 2; anything else is a bug
        msg = " ".join(str(exc).split("\n")[0].split()) or type(exc).__name__
        print(f"policylab {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"policylab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
