"""Small helpers shared by the benchmark scripts: a Markdown table, a timer, interleaved
best-of-N timing, peak RSS, and a one-line description of the machine.

Import from a script in this folder with ``from _common import ...`` (a script's own folder is
on ``sys.path``), or from elsewhere after putting ``benchmarks/`` on ``sys.path``.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

__all__ = [
    "Best",
    "Timer",
    "best_of_interleaved",
    "children_peak_rss_mib",
    "machine_info",
    "markdown_table",
    "peak_rss_mib",
]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; cells are str()-ed, numbers right-aligned."""
    cells = [[str(c) for c in r] for r in rows]
    for r in cells:
        if len(r) != len(headers):
            raise ValueError(f"row {r} has {len(r)} cells for {len(headers)} headers")
    width = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(cells) and all(_is_number(r[i]) for r in cells) for i in range(len(headers))]

    def line(vals):
        return "| " + " | ".join(v.rjust(w) if num else v.ljust(w)
                                 for v, w, num in zip(vals, width, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                          for w, num in zip(width, numeric)) + "|"
    return "\n".join([line(list(headers)), rule] + [line(r) for r in cells])


def _is_number(s: str) -> bool:
    s = s.strip().rstrip("×x%").replace(",", "")
    try:
        float(s)
        return True
    except ValueError:
        return s in ("", "—", "-")


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds`` (wall clock, perf_counter)."""

    def __enter__(self) -> Timer:  # noqa: PYI034
        self._t0 = time.perf_counter()
        self.seconds = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0


class Best(NamedTuple):
    """Minimum wall and CPU seconds over the runs of one callable, its last result, runs made."""

    wall: float
    cpu: float
    result: object
    runs: int


def best_of_interleaved(fns: dict[str, Callable[[], object]], repeat: int,
                        skip_after: float = float("inf")) -> dict[str, Best]:
    """Run every callable ``repeat`` times, interleaved round by round (so machine load hits all
    alike), and keep the minimum wall time and the minimum CPU time (``time.process_time``: this
    process only, steadier than wall time on a shared machine for single-threaded code). A
    callable whose first run took longer than ``skip_after`` wall seconds is not repeated."""
    out: dict[str, Best] = {}
    for rnd in range(max(1, int(repeat))):
        for name, fn in fns.items():
            if rnd > 0 and out[name].wall > skip_after:
                continue
            c0 = time.process_time()
            with Timer() as t:
                res = fn()
            cpu = time.process_time() - c0
            prev = out.get(name, Best(float("inf"), float("inf"), None, 0))
            out[name] = Best(min(prev.wall, t.seconds), min(prev.cpu, cpu), res, prev.runs + 1)
    return out


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return _ru_maxrss_mib(resource.RUSAGE_SELF)


def children_peak_rss_mib() -> float:
    """Largest peak RSS among this process's waited-for children, in MiB."""
    return _ru_maxrss_mib(resource.RUSAGE_CHILDREN)


def _ru_maxrss_mib(who) -> float:
    r = resource.getrusage(who).ru_maxrss
    return r / 1024.0**2 if sys.platform == "darwin" else r / 1024.0  # bytes on macOS, KiB on Linux


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(extra: dict[str, str] | None = None) -> str:
    """One line: UTC date, CPU model, cores, load average, Python/numpy/scipy versions (+ extra)."""
    import numpy
    import scipy

    parts = [_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             f"{_cpu_model()}, {os.cpu_count()} cores"]
    try:
        parts.append("load avg " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    except OSError:
        pass
    parts += [f"Python {platform.python_version()}", f"numpy {numpy.__version__}",
              f"scipy {scipy.__version__}",
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"]
    parts += [f"{k} {v}" for k, v in (extra or {}).items()]
    return "Machine: " + "; ".join(parts)
