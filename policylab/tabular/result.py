"""What a tabular learner returns: :class:`TabularResult`, the per-update trace layout
(:data:`TRACE_DTYPE`), and writing a trace to a file atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from policylab.errors import InputError

__all__ = ["TRACE_DTYPE", "TabularResult", "write_trace"]

#: One row per update. ``q_before``/``q_after`` hold V(s) for the prediction methods;
#: ``target`` is y_t (the return G_t for Monte Carlo); ``a_next`` is SARSA's a', else −1.
TRACE_DTYPE = np.dtype([
    ("t", np.int64), ("episode", np.int64), ("s", np.int64), ("a", np.int64),
    ("r", np.float64), ("s_next", np.int64), ("a_next", np.int64),
    ("terminated", np.bool_), ("truncated", np.bool_),
    ("alpha", np.float64), ("target", np.float64), ("td_error", np.float64),
    ("q_before", np.float64), ("q_after", np.float64),
])
TRACE_INT_FIELDS = ("t", "episode", "s", "a", "s_next", "flags", "a_next")  # (n, 7) int64
TRACE_FLOAT_FIELDS = ("r", "alpha", "target", "td_error", "q_before", "q_after")  # (n, 6) float64


@dataclass
class TabularResult:
    """What a tabular learner returns.

    Q: (S, A) action values (control), else None.  V: (S,) state values (max_a Q for control).
    policy: (S,) greedy actions argmax_a Q (control), else None.
    episode_returns / episode_lengths: (E,) undiscounted return and length of every episode
        that ended (terminated or truncated) during the run.
    visits: (S, A) N(s, a), how often each action was taken in each state.
    trace: (steps,) structured array of TRACE_DTYPE when asked, else None.
    """

    algorithm: str
    V: np.ndarray
    Q: np.ndarray | None
    policy: np.ndarray | None
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    visits: np.ndarray
    steps: int
    backend: str
    config: dict = field(default_factory=dict)
    trace: np.ndarray | None = None

    def __repr__(self) -> str:
        table = "Q" + str(self.Q.shape) if self.Q is not None else "V" + str(self.V.shape)
        return (f"TabularResult({self.algorithm}, {table}, steps={self.steps}, "
                f"episodes={len(self.episode_returns)}, backend={self.backend!r}, "
                f"trace={'yes' if self.trace is not None else 'no'})")


def plain_config(value):
    """A JSON-friendly config value: Schedules as their repr, arrays as a shape note."""
    if isinstance(value, np.ndarray):
        return f"array{value.shape}"
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    return repr(value)


def assemble_trace(ints: list[np.ndarray], floats: list[np.ndarray]) -> np.ndarray:
    """Join kernel trace chunks ((n, 7) int64 and (n, 6) float64) into one TRACE_DTYPE array."""
    ti = np.concatenate(ints) if ints else np.zeros((0, 7), np.int64)
    tf = np.concatenate(floats) if floats else np.zeros((0, 6), np.float64)
    out = np.empty(len(ti), dtype=TRACE_DTYPE)
    for k, name in enumerate(TRACE_INT_FIELDS):
        if name == "flags":
            out["terminated"] = (ti[:, k] & 1).astype(bool)
            out["truncated"] = (ti[:, k] & 2).astype(bool)
        else:
            out[name] = ti[:, k]
    for k, name in enumerate(TRACE_FLOAT_FIELDS):
        out[name] = tf[:, k]
    return out


def check_trace_path(path: str) -> None:
    """Refuse, before any work, a trace path that cannot be written (InputError naming it)."""
    if not str(path).endswith((".csv", ".npy")):
        raise InputError(f"trace file must end in .csv or .npy, got {path!r}")
    if os.path.isdir(path):
        raise InputError(f"trace file {path!r} is a directory")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"trace file {path!r}: folder {folder!r} is missing")
    if not os.access(folder, os.W_OK):
        raise InputError(f"trace file {path!r}: folder {folder!r} is not writable")


def write_trace(path: str, trace: np.ndarray) -> None:
    """Write a TRACE_DTYPE array to ``path`` (.npy, or .csv with a header) atomically: a temp
    file beside it, then os.replace; the temp file is removed if anything fails."""
    check_trace_path(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        if path.endswith(".npy"):
            with open(tmp, "wb") as f:
                np.save(f, trace, allow_pickle=False)
        else:
            header = ",".join(trace.dtype.names)
            fmt = ["%d" if trace.dtype[n].kind in "ib" else "%.17g" for n in trace.dtype.names]
            np.savetxt(tmp, trace, delimiter=",", header=header, comments="", fmt=fmt)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
