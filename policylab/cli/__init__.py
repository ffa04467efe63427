"""The `policylab` command: one entry point, one module per subcommand.

Each subcommand lives in ``policylab/cli/<name>.py`` and exposes ``add_parser(subparsers)``, which
registers the subcommand and sets ``func=run`` with ``run(args) -> int``. Only the module of the
command being run is imported (``policylab --help`` imports none), and modules import heavy
libraries (torch, transformers, matplotlib, scipy) inside ``run``.

Every numeric option has a stated range, checked while parsing (before any work): ``type=int``
options are in [0, 2147483647] and ``type=float`` options finite unless the option states its own
with ``type=policylab.config.number(int, "[1, 100000]")``; the range appears in ``--help``.

Bad input raises a :class:`policylab.errors.PolicylabError`; ``main`` prints it as one line and
exits with code 2 (argparse errors too). Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path

from policylab.config import FLOAT_RANGE, number
from policylab.deep.registry import ALGORITHMS  # names only (no torch import)
from policylab.errors import PolicylabError, UsageError

# Order = order in `policylab --help`; the one-line summary of each command.
SUMMARY = {
    "plan": "solve a known MDP (value/policy iteration): V*, Q*, pi*",
    "learn": "tabular RL (Q-learning, SARSA, TD(0), MC) on a catalog MDP vs planning",
    "train": f"train {' / '.join(ALGORITHMS)} on a Gymnasium env",
    "eval": "evaluate a trained agent (a run directory)",
    "llm": "SFT / DPO / GRPO on causal language models (offline)",
    "sweep": "seeds × hyperparameters on Ray Tune (local or a cluster)",
    "figures": "render the lecture's six figures (PNG + SVG)",
    "plot": "learning curves across seeds with bootstrap CIs + final table",
    "tour": "walk through the whole arc and write tour/index.html",
    "bench": "run a benchmark against peer libraries (needs the source checkout)",
}
SUBCOMMANDS = list(SUMMARY)
MAX_STEPS = 10**12  # upper bound of --steps-like counts (int64-safe, far beyond any run here)


def parse_count(text: str, flag: str = "--steps", hi: int = MAX_STEPS) -> int:
    """A whole number in [1, hi] written as 100000, 1e5 or 1_000; UsageError naming ``flag`` otherwise."""
    msg = f"{flag} must be a whole number in [1, {f'{hi:.0e}'.replace('e+', 'e')}], got {text!r}"
    try:
        value = float(str(text).replace("_", ""))
    except ValueError:
        raise UsageError(msg) from None
    if not (1 <= value <= hi) or value != int(value):
        raise UsageError(msg)
    return int(value)


def writable_dir(path, flag: str = "--out") -> Path:
    """Create folder ``path`` if needed and check a file can be written in it; UsageError otherwise."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {path} is an existing file, not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write there ({exc.strerror or exc})") from None
    return p


def writable_file(path, flag: str) -> Path:
    """Check that file ``path`` can be written (its folder is created); UsageError naming ``flag``."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{flag} {path}: file is read-only")
    writable_dir(p.parent, f"{flag} {path}: folder")
    return p


class _RangeHelp:
    """Help-formatter mixin: append each numeric option's range to its help text."""

    def _get_help_string(self, action):
        text = super()._get_help_string(action) or ""
        conv = {int: number(int), float: number(float)}.get(action.type, action.type)
        rng = getattr(conv, "range", None)
        if rng is not None and "range" not in text and "finite" not in text:
            text += " [finite]" if rng == FLOAT_RANGE else f" [range {rng}]"
        return text


class OneLineParser(argparse.ArgumentParser):
    """argparse, but: a usage error is one line on stderr and exit code 2 (no usage dump); no
    abbreviated options; ``type=int``/``type=float`` options get the default ranges; ``lazy`` holds
    functions ``f(parser)`` run once before the parser is first used (to add options that need an
    import, e.g. a config dataclass's fields)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        fmt = kwargs.get("formatter_class", argparse.HelpFormatter)
        kwargs["formatter_class"] = fmt if issubclass(fmt, _RangeHelp) else type(fmt.__name__, (_RangeHelp, fmt), {})
        super().__init__(*args, **kwargs)
        self.register("type", int, number(int))
        self.register("type", float, number(float))
        self.lazy: list = []
        self.on_help: list = []  # functions f(parser) run once before the help is printed

    def run_lazy(self) -> None:
        while self.lazy:
            self.lazy.pop(0)(self)

    def parse_known_args(self, args=None, namespace=None):
        self.run_lazy()
        return super().parse_known_args(args, namespace)

    def format_help(self):
        self.run_lazy()
        while self.on_help:
            self.on_help.pop(0)(self)
        return super().format_help()

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def list_fields(parser, classes: dict) -> None:
    """Put the fields of each config dataclass (``{"ppo": PPOConfig, ...}``) in the help's epilog."""
    from policylab.config import describe_fields

    parser.epilog = "\n\n".join(f"{name}: {describe_fields(cls)}" for name, cls in classes.items())
    parser.formatter_class = type("RawRangeHelp", (_RangeHelp, argparse.RawDescriptionHelpFormatter), {})


def build_parser(argv: list[str] | None = None, full: bool = False) -> argparse.ArgumentParser:
    """The parser; only the subcommand named first in ``argv`` is imported (all with ``full``)."""
    parser = OneLineParser(prog="policylab", description="Reinforcement learning from MDPs to GRPO/DPO.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    chosen = argv[0] if argv else None
    for name, summary in SUMMARY.items():
        if full or name == chosen:
            importlib.import_module(f"policylab.cli.{name}").add_parser(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def all_parsers(parser: argparse.ArgumentParser | None = None, prog_words=()):
    """Yield (words, parser) for every (sub)command, lazy options added: ``(("llm", "grpo"), p)``."""
    parser = parser or build_parser(full=True)
    if isinstance(parser, OneLineParser):
        parser.run_lazy()
    yield tuple(prog_words), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from all_parsers(child, (*prog_words, name))


def main(argv: list[str] | None = None) -> int:
    """Run ``policylab ARGV...`` and return the exit code (0, 2 for user errors, 130 on Ctrl-C).

    Called without ``argv`` — as the ``policylab`` process (console script, ``python -m
    policylab``) — it ends the process itself: non-daemon threads are joined, atexit handlers run and
    the streams are flushed, then ``os._exit`` skips the interpreter's teardown of the torch/numba
    objects (~0.7 s of a short run; every file policylab writes is closed before ``run`` returns).
    """
    if argv is None:
        if "torch.optim.optimizer" not in sys.modules:  # the process's own start: no torch.compile later
            from policylab.startup import skip_optimizer_dynamo

            skip_optimizer_dynamo()
        _exit_fast(_main(sys.argv[1:]))
    return _main(list(argv))


def _exit_fast(code: int) -> None:
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to lose
            pass
    os._exit(code)


def _main(argv: list[str]) -> int:
    command = argv[0] if argv else "policylab"
    try:
        args = build_parser(argv).parse_args(argv)
        command = args.command
        return int(args.func(args) or 0)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except PolicylabError as exc:  # a user mistake: one line, exit 2; anything else is a bug
        msg = " ".join(str(exc).split("\n")[0].split()) or type(exc).__name__
        print(f"policylab {command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"policylab {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `policylab plan | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
