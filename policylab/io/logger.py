"""Run logs: one CSV row per training iteration, mirrored to TensorBoard when enabled.

Standard names (CleanRL / SB3 convention) so curves line up across libraries.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from policylab.errors import UsageError
from policylab.io.checkpoint import atomic_write_bytes

__all__ = ["STANDARD_KEYS", "RunLogger"]

STANDARD_KEYS = (
    "charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
    "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl",
    "losses/clip_fraction", "losses/explained_variance", "eval/mean_return", "eval/std_return",
)


class RunLogger:
    """``log(step, metrics)`` appends to ``<out>/progress.csv`` and ``<out>/tb`` (TensorBoard).

    Columns are ``global_step`` + STANDARD_KEYS + the other keys seen; a metric absent from a row
    (e.g. no episode ended) is left empty, and a key first seen later widens the file (rewritten
    with the new column) rather than being dropped.

    ``resume_step=None`` starts a new log: a ``progress.csv`` that already holds rows belongs to
    another run and is refused (UsageError naming the file) instead of being mixed or overwritten.
    ``resume_step=S`` continues a run from its checkpoint at step S: rows with ``global_step > S``
    (written after that checkpoint by a run that was killed) are removed first, and TensorBoard
    events after S are purged, so the log has each step once.
    """

    def __init__(self, out_dir, tensorboard: bool = True, resume_step: int | None = None):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out / "progress.csv"
        self._file = None
        self._writer = None
        self._columns: list[str] | None = None
        self._rows: list[list[str]] = []
        if self.csv_path.exists():
            header, rows = _read_csv(self.csv_path)
            if rows and resume_step is None:
                raise UsageError(f"{self.csv_path} holds the log of another run ({len(rows)} rows); "
                                 "choose another output directory or delete that file")
            if header:
                kept = [r for r in rows if len(r) == len(header) and _step(r) is not None
                        and _step(r) <= (resume_step or 0)]
                self._columns, self._rows = header, kept
                if len(kept) != len(rows):
                    self._rewrite()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(str(self.out / "tb"), purge_step=purge)

    def log(self, step: int, metrics: dict) -> None:
        if self._columns is None:
            extra = [k for k in metrics if k not in STANDARD_KEYS]
            self._columns = ["global_step", *STANDARD_KEYS, *extra]
            self._rewrite()
        new = [k for k in metrics if k not in self._columns]
        if new:  # widen the file: old rows get empty cells for the new columns
            self._rows = [r + [""] * len(new) for r in _read_csv(self.csv_path)[1]]
            self._columns = [*self._columns, *new]
            self._rewrite()
        if self._file is None:
            self._file = self.csv_path.open("a", newline="")
            self._csv = csv.writer(self._file)
        self._csv.writerow([step] + [_fmt(metrics.get(k)) for k in self._columns[1:]])
        self._file.flush()
        if self._writer is not None:
            for k, v in metrics.items():
                if v is not None and math.isfinite(v):
                    self._writer.add_scalar(k, v, step)

    def _rewrite(self) -> None:
        """Replace progress.csv (atomically) by the header + ``self._rows``."""
        if self._file is not None:
            self._file.close()
            self._file = None
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self._columns)
        writer.writerows(self._rows)
        atomic_write_bytes(self.csv_path, buf.getvalue().encode())
        self._rows = []

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        lines = list(csv.reader(f))
    return (lines[0], lines[1:]) if lines else ([], [])


def _step(row: list[str]) -> int | None:
    try:
        return int(row[0])
    except ValueError:
        return None


def _fmt(v):
    return "" if v is None else f"{float(v):.6g}"
