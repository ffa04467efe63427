"""Run logs: one CSV row per training iteration, mirrored to TensorBoard when enabled.

Standard names (CleanRL / SB3 convention) so curves line up across libraries.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

__all__ = ["STANDARD_KEYS", "RunLogger"]

STANDARD_KEYS = (
    "charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
    "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl",
    "losses/clip_fraction", "losses/explained_variance", "eval/mean_return", "eval/std_return",
)


class RunLogger:
    """``log(step, metrics)`` appends to ``<out>/progress.csv`` and ``<out>/tb`` (TensorBoard).

    Columns are ``global_step`` + STANDARD_KEYS + any other keys seen in the first row; a metric
    absent from a row (e.g. no episode ended) is left empty. Appends when resuming.
    """

    def __init__(self, out_dir, tensorboard: bool = True):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out / "progress.csv"
        self._file = None
        self._writer = None
        self._columns: list[str] | None = None
        if self.csv_path.exists() and self.csv_path.stat().st_size > 0:
            with self.csv_path.open() as f:
                self._columns = next(csv.reader(f))
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tb"))

    def log(self, step: int, metrics: dict) -> None:
        if self._columns is None:
            extra = [k for k in metrics if k not in STANDARD_KEYS]
            self._columns = ["global_step", *STANDARD_KEYS, *extra]
        if self._file is None:
            new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
            self._file = self.csv_path.open("a", newline="")
            self._csv = csv.writer(self._file)
            if new:
                self._csv.writerow(self._columns)
        row = [step] + [_fmt(metrics.get(k)) for k in self._columns[1:]]
        self._csv.writerow(row)
        self._file.flush()
        if self._writer is not None:
            for k, v in metrics.items():
                if v is not None and math.isfinite(v):
                    self._writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _fmt(v):
    return "" if v is None else f"{float(v):.6g}"
