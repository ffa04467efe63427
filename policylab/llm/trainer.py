"""The training loop SFT, DPO and GRPO share: config base (validated fields), optimizer and schedule,
logging, checkpoints and resume.

Each algorithm file (``supervised.py``, ``dpo.py``, ``grpo.py``) subclasses :class:`Trainer` once and
implements ``_prepare()`` (validate data before any work) and ``_step(step) -> dict`` (one update).

Guarantees (tested in ``tests/test_robustness_llm.py``):

- every config field is checked (type, finite, range) when the config is built, before any model loads;
- the output directory is locked (:class:`policylab.io.lock.RunLock`) while a run writes it;
- a non-finite loss, gradient norm, reward or parameter stops the run with
  :class:`~policylab.errors.DivergenceError` naming the step and quantity, before anything is saved;
- ``resume`` verifies checkpoint hashes, falls back to the newest good checkpoint (warning), refuses
  another model or changed hyper-parameters (only max_steps and logging/saving fields may change),
  and truncates ``log.jsonl`` back to the checkpoint's step;
- a run that fails before logging anything leaves no empty ``log.jsonl`` (nor an empty output dir).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from policylab.errors import CheckpointError, DivergenceError, InputError
from policylab.io.checkpoint import atomic_write_bytes
from policylab.io.interrupt import deferred_interrupt
from policylab.io.lock import RunLock
from policylab.llm.checkpoint import (
    checkpoint_step,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from policylab.llm.data import check_chat_template, load_rows
from policylab.llm.models import add_lora, resolve_model

__all__ = ["RESUMABLE_FIELDS", "TrainConfig", "Trainer", "check_config"]

#: Fields that may differ between a checkpoint's config and the resuming run's.
RESUMABLE_FIELDS = frozenset({"max_steps", "output_dir", "logging_steps", "save_steps", "save_total_limit", "progress"})


def check_config(cfg) -> None:
    """Coerce and check every field of a config dataclass with :mod:`policylab.config` (type, finite,
    the ``RANGES`` merged along its bases; an int without a range is in [0, 2³¹−1]); ConfigError names
    the field. Runs when the config is built, so a bad value fails before any model loads."""
    from policylab.config import check_value, coerce, field_specs

    for spec in field_specs(type(cfg)):
        value = coerce(spec.name, getattr(cfg, spec.name), spec.hint)
        check_value(spec.name, value, spec)
        setattr(cfg, spec.name, value)


@dataclass
class TrainConfig:
    """Fields every trainer shares (the algorithm configs add theirs)."""

    model: str = "tiny"  #: local Hugging Face folder, or "tiny" for policylab.llm.tiny's model
    train_file: str | None = None  #: training data: JSONL, Parquet or JSON file (or pass records/a Dataset to the trainer)
    split: str = "train"  #: DatasetDict split to train on, optionally sliced ("train[:80%]"); a file is split "train"
    output_dir: str = "runs/llm"  #: checkpoints and log.jsonl go here
    seed: int = 0  #: seeds data order, sampling and the tiny model
    max_steps: int = 100  #: optimizer steps
    batch_size: int = 8  #: sequences per step (TRL per_device_train_batch_size)
    learning_rate: float = 1e-6  #: AdamW learning rate
    weight_decay: float = 0.0  #: AdamW weight decay
    adam_betas: tuple[float, float] = (0.9, 0.999)  #: AdamW betas
    max_grad_norm: float = 1.0  #: gradient-norm clip (0 disables)
    lr_scheduler: str = "constant"  #: "constant" or "linear" decay to 0 (TRL/HF Trainer default: linear)
    warmup_steps: int = 0  #: linear warm-up steps before the schedule
    max_prompt_length: int = 512  #: a longer tokenized prompt is an error (row named)
    logging_steps: int = 1  #: append to log.jsonl every N steps
    save_steps: int = 0  #: checkpoint every N steps (0: only at the end)
    save_total_limit: int = 2  #: keep at most this many checkpoints (0: keep all)
    progress: bool = True  #: tqdm progress bar
    use_peft: bool = False  #: train LoRA adapters (PEFT) instead of all weights; the reference is the base model
    lora_r: int = 16  #: LoRA rank r
    lora_alpha: int = 32  #: LoRA scale α (the update is (α/r)·BA)
    lora_dropout: float = 0.05  #: dropout on the LoRA input
    lora_target_modules: list[str] | None = None  #: module names to adapt (None: PEFT's default for the model type)

    #: Ranges of the fields (policylab.config; shown in --help, checked by :func:`check_config`).
    RANGES: ClassVar[dict] = {"max_steps": "[1, 2147483647]", "batch_size": "[1, 65536]",
                              "learning_rate": "(0, 10]", "weight_decay": "[0, inf)", "adam_betas": "[0, 1)",
                              "max_grad_norm": "[0, inf)", "lr_scheduler": ("constant", "linear"),
                              "max_prompt_length": "[1, 1048576]", "logging_steps": "[1, 2147483647]",
                              "lora_r": "[1, 65536]", "lora_alpha": "[1, 1048576]", "lora_dropout": "[0, 1)"}

    def __post_init__(self):
        check_config(self)


def _finite(value: float, step: int, what: str) -> None:
    if not math.isfinite(value):
        raise DivergenceError(f"step {step}: {what} is {value}; stopped before saving (the last checkpoint is kept)")


class Trainer:
    """Loop, logging, checkpoints. ``self.records``/``self.labels`` hold the validated rows (loaded before
    the model); subclasses tokenize them in ``_prepare`` and define ``_step``."""

    config_class: ClassVar[type] = TrainConfig
    progress_keys: ClassVar[tuple[str, ...]] = ("loss",)
    model_kind: ClassVar[str] = "causal"  #: what resolve_model loads: "causal" LM or "reward" model
    data_format: ClassVar[str] = "sft"  #: row shapes accepted (policylab.llm.data.FORMATS)

    def __init__(self, model, tokenizer=None, config: TrainConfig | None = None, train_data=None):
        self.config = config = config or self.config_class()
        if train_data is None and config.train_file is None:
            raise InputError("no training data: give train_data or config.train_file")
        torch.manual_seed(config.seed)
        self.train_data = config.train_file if train_data is None else train_data
        # rows are validated before any weights load; a chat row needs the tokenizer's template
        self.records, self.labels = load_rows(self.train_data, self.data_format, config.split)
        self.model, self.tokenizer = resolve_model(
            model, tokenizer, seed=config.seed, kind=self.model_kind,
            before_weights=lambda tok: check_chat_template(self.records, self.labels, tok))
        if config.use_peft:
            self.model = add_lora(self.model, config, self.model_kind)
        self.model.train()
        self._prepare()  # validates data and builds reference pieces: all errors happen here
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay,
            fused=all(p.device.type in ("cpu", "cuda") for p in params),  # one kernel for all tensors
        )
        self.step = 0
        self.history: list[dict] = []

    def batch_indices(self, step: int, n: int | None = None) -> list[int]:
        """Rows of step ``step``: a seeded permutation per epoch, so a resumed run sees the same order."""
        size = len(self.records)
        n = self.config.batch_size if n is None else n
        cache = self.__dict__.setdefault("_perms", {})
        out = []
        for pos in range(step * n, (step + 1) * n):
            epoch, i = divmod(pos, size)
            if epoch not in cache:
                cache[epoch] = np.random.default_rng([self.config.seed, epoch]).permutation(size)
            out.append(int(cache[epoch][i]))
        return out

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based), as HF's get_{constant,linear}_schedule_with_warmup."""
        cfg = self.config
        if step < cfg.warmup_steps:
            return cfg.learning_rate * step / max(1, cfg.warmup_steps)
        if cfg.lr_scheduler == "linear":
            return cfg.learning_rate * max(0.0, (cfg.max_steps - step) / max(1, cfg.max_steps - cfg.warmup_steps))
        return cfg.learning_rate

    def _update(self, loss: torch.Tensor) -> float:
        """Backward, clip, AdamW step at lr_at(self.step); returns the pre-clip gradient norm.
        A non-finite loss or gradient norm raises DivergenceError before the weights change."""
        _finite(loss.item(), self.step + 1, "the loss")
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        _finite(norm, self.step + 1, "the gradient norm")
        self.optimizer.step()
        return norm

    def save(self, directory=None) -> Path:
        """Checkpoint into ``output_dir/checkpoint-<step>`` (refused if any parameter is non-finite)."""
        for name, p in self.model.named_parameters():
            if not bool(torch.isfinite(p).all()):
                _finite(math.nan, self.step, f"parameter {name}")
        directory = directory or Path(self.config.output_dir) / f"checkpoint-{self.step}"
        path = save_checkpoint(directory, self.model, self.tokenizer, self.optimizer, self.step, self.config)
        limit = self.config.save_total_limit
        if limit:
            ckpts = sorted(Path(self.config.output_dir).glob("checkpoint-*"), key=checkpoint_step)
            for old in ckpts[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def resume(self, checkpoint="latest") -> int:
        """Load a checkpoint folder (or the newest that verifies in output_dir); training continues
        from its step. Refuses a checkpoint of another model or with other hyper-parameters."""
        if checkpoint == "latest":
            checkpoint = latest_checkpoint(self.config.output_dir)
            if checkpoint is None:
                raise CheckpointError(f"nothing to resume: no complete checkpoint in {self.config.output_dir}")
        state = load_checkpoint(checkpoint, self.model, self.optimizer)
        self._check_same_run(state.get("config", {}), checkpoint)
        self.step = int(state["step"])
        return self.step

    def _check_same_run(self, saved: dict, checkpoint) -> None:
        ours = json.loads(json.dumps(dataclasses.asdict(self.config)))
        if saved.get("model") != ours["model"]:
            raise CheckpointError(f"{checkpoint} was trained from model {saved.get('model')!r}, not {ours['model']!r}; "
                                  "to fine-tune it further start a new run with --model pointing at the checkpoint")
        changed = [k for k in ours if k not in RESUMABLE_FIELDS and k in saved and saved[k] != ours[k]]
        if changed:
            diffs = ", ".join(f"{k}: {saved[k]!r} -> {ours[k]!r}" for k in changed)
            raise CheckpointError(f"resume would change {diffs} (only {', '.join(sorted(RESUMABLE_FIELDS))} may "
                                  f"change); start a new run with --model {checkpoint} instead")

    def _truncate_log(self, log_path: Path) -> None:
        """Drop log rows past the resumed step (a killed run logged steps its checkpoint does not hold)."""
        if not log_path.exists():
            return
        rows = [line for line in log_path.read_text().splitlines() if line.strip()]
        keep = [line for line in rows if json.loads(line).get("step", 0) <= self.step]
        if len(keep) != len(rows):
            atomic_write_bytes(log_path, "".join(line + "\n" for line in keep).encode())

    def train(self, resume_from=None) -> list[dict]:
        """Run until ``config.max_steps``; returns the logged history (also in output_dir/log.jsonl)."""
        out = Path(self.config.output_dir)
        existed = out.exists()
        try:
            with RunLock(out):
                return self._train(out, resume_from)
        finally:
            if not existed and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # a run that failed before writing anything leaves nothing behind

    def _train(self, out: Path, resume_from) -> list[dict]:
        from tqdm.auto import tqdm

        cfg = self.config
        if resume_from is not None:
            self.resume(resume_from)
            self._truncate_log(out / "log.jsonl")
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not cfg.progress, desc=type(self).__name__)
        log = None
        with deferred_interrupt() as interrupted:  # Ctrl-C: finish the step, save it, then stop
            try:
                while self.step < cfg.max_steps:
                    lr = self.lr_at(self.step)
                    stats = self._step(self.step)
                    self.step += 1
                    stats = {"step": self.step, "learning_rate": lr, **{k: float(v) for k, v in stats.items()}}
                    self.history.append(stats)
                    if self.step % cfg.logging_steps == 0:
                        log = log or (out / "log.jsonl").open("a")  # opened on the first row: no empty leftovers
                        log.write(json.dumps(stats) + "\n")
                        log.flush()
                        bar.set_postfix({k: f"{stats[k]:.3g}" for k in self.progress_keys if k in stats})
                    bar.update(1)
                    if interrupted[0]:
                        break
                    if cfg.save_steps and self.step % cfg.save_steps == 0 and self.step < cfg.max_steps:
                        self.save()
            finally:
                bar.close()
                if log is not None:
                    log.close()
            self.save()
        if interrupted[0]:
            raise KeyboardInterrupt(f"interrupted at step {self.step}; checkpoint-{self.step} saved")
        return self.history
