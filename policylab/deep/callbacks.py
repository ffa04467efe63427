"""Evaluation during training and early stop (SB3's ``EvalCallback`` + ``StopTrainingOnRewardThreshold``).

``Agent.learn(..., eval_every=N, eval_episodes=K, stop_at_return=R)`` builds one :class:`EvalCallback`:
every N env steps it runs ``agent.evaluate(K, deterministic=True)`` — a separate env, built fresh
from the training env's id, with the normalization statistics frozen (``act`` never updates
them) — logs ``eval/mean_return`` and ``eval/std_return``, keeps the best agent so far as its own
checkpoint (``<checkpoint_dir>/best``, with ``best.json`` beside it), and ends training the first
time the evaluation mean reaches R.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from policylab.errors import InputError

__all__ = ["EvalCallback"]


class EvalCallback:
    """``callback(agent, metrics)`` for ``Agent.learn``: evaluate every ``eval_every`` env steps.

    Returns False (stop) at the first evaluation whose mean return is ≥ ``stop_at_return``.
    ``history`` holds (step, mean, std) of every evaluation; ``best_mean`` the best mean so far
    (read back from ``best_dir/best.json`` when a run resumes)."""

    def __init__(self, eval_every: int, episodes: int = 10, stop_at_return: float | None = None,
                 best_dir=None, start_step: int = 0):
        if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every <= 0:
            raise InputError(f"eval_every must be a positive number of env steps, got {eval_every!r}")
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise InputError(f"eval_episodes must be a positive int, got {episodes!r}")
        if stop_at_return is not None and not math.isfinite(stop_at_return):
            raise InputError(f"stop_at_return must be a finite number, got {stop_at_return!r}")
        self.eval_every, self.episodes, self.stop_at_return = eval_every, episodes, stop_at_return
        self.best_dir = None if best_dir is None else Path(best_dir)
        self.best_mean = -math.inf
        self.history: list[tuple[int, float, float]] = []
        self.stopped = False
        self._next = self._next_after(start_step)  # env step of the next evaluation
        if self.best_dir is not None and (self.best_dir / "best.json").is_file():
            self.best_mean = float(json.loads((self.best_dir / "best.json").read_text())["mean_return"])

    def _next_after(self, step: int) -> int:
        return (step // self.eval_every + 1) * self.eval_every

    def __call__(self, agent, metrics: dict) -> bool:
        if agent.num_steps < self._next:
            return True
        self._next = self._next_after(agent.num_steps)
        stats = agent.evaluate(self.episodes, deterministic=True)
        metrics["eval/mean_return"], metrics["eval/std_return"] = stats.mean, stats.std
        self.history.append((agent.num_steps, stats.mean, stats.std))
        if stats.mean > self.best_mean:
            self.best_mean = stats.mean
            if self.best_dir is not None:
                agent.save(self.best_dir)
                (self.best_dir / "best.json").write_text(json.dumps(
                    {"step": agent.num_steps, "mean_return": stats.mean, "std_return": stats.std}))
        if self.stop_at_return is not None and stats.mean >= self.stop_at_return:
            self.stopped = True
            return False
        return True
