"""Metric trackers of the LLM trainers (``report_to``): TensorBoard (default, like the RL side), Weights &
Biases or MLflow; log.jsonl is always written. Only the main process makes one (trainer.py).

Metric names are TRL 1.16's (``loss``, ``learning_rate``, ``grad_norm``, ``rewards/chosen``,
``rewards/margins``, ``reward``, ``reward_std``, ``kl``, ``completions/mean_length`` ...), so curves
line up with a TRL run in the same dashboard. wandb and mlflow are optional extras; choosing one
that is not installed is a ConfigError when the config is built (trainer.TrainConfig).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

__all__ = ["make_tracker"]


class _TensorBoard:
    def __init__(self, out: Path, first_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out / "tb"), purge_step=first_step)  # a resumed run overwrites later steps

    def log(self, step: int, metrics: dict) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, out: Path, config):
        import wandb

        self.run = wandb.init(project="policylab", dir=str(out), name=out.name, config=dataclasses.asdict(config))

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, out: Path, config):
        import mlflow

        self.mlflow = mlflow
        self.run = mlflow.start_run(run_name=out.name)
        mlflow.log_params({k: str(v)[:250] for k, v in dataclasses.asdict(config).items()})

    def log(self, step: int, metrics: dict) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


class _Nothing:
    def log(self, step: int, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass


def make_tracker(config, out: Path, first_step: int):
    """The tracker named by ``config.report_to``; ``first_step`` is the first step it will receive."""
    if config.report_to == "tensorboard":
        return _TensorBoard(out, first_step)
    if config.report_to == "wandb":
        return _WandB(out, config)
    if config.report_to == "mlflow":
        return _MLflow(out, config)
    return _Nothing()
