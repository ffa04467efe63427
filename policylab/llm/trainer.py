"""The training loop SFT, DPO, GRPO and the reward trainer share: config base (validated fields),
device / precision / processes (``accelerate``), optimizer and schedule, logging, checkpoints, resume.

Each algorithm file (``supervised.py``, ``dpo.py``, ``grpo.py``, ``reward.py``) subclasses
:class:`Trainer` once and implements ``_prepare()`` (validate data before any work) and either
``_micro_loss(rows) -> (loss, units, stats)`` (the mean loss of some rows and how many loss units —
tokens or pairs — it averages; the base ``_step`` does the rest) or its own ``_step(step) -> dict``.

One optimizer step, any number of processes P and accumulation steps A (``accelerate launch`` or
``torchrun`` start the processes; :func:`make_accelerator` joins them, gloo on CPU):

  global rows  = batch_indices(step)                 (the same on every process: config.batch_size)
  this process = rows[rank·B/P : (rank+1)·B/P]        (whole GRPO groups: shard prompts, not completions)
  micro-batch  = B / (P·A) rows → loss_k (its mean), u_k units; backward of loss_k · u_k / U
                 (U = units of the whole global batch) → Σ over micro-batches and processes is the
                 global batch's mean loss, exactly as one process with the whole batch computes it
  all-reduce   = one SUM of the flattened gradients over processes; then clip, AdamW (identical on all)
  log          = unit-weighted means of the stats over micro-batches and processes; only the main
                 process holds the RunLock and writes log.jsonl, the tracker and checkpoints

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

import contextlib
import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from policylab.errors import CheckpointError, ConfigError, DivergenceError, InputError
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

__all__ = ["RESUMABLE_FIELDS", "TrainConfig", "Trainer", "check_config", "make_accelerator", "set_malloc_mmap_threshold"]

#: Fields that may differ between a checkpoint's config and the resuming run's (the global batch
#: stays batch_size, so a run may resume on other hardware, precision or process count).
RESUMABLE_FIELDS = frozenset({"max_steps", "output_dir", "logging_steps", "save_steps", "save_total_limit", "progress",
                              "device", "mixed_precision", "gradient_accumulation_steps", "gradient_checkpointing",
                              "malloc_mmap_threshold",
                              "report_to"})
TRACKERS = {"tensorboard": ("tensorboard", "llm"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


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
    device: str = "auto"  #: "auto" (CUDA when present, else CPU), "cpu" or "cuda" (pick GPUs with CUDA_VISIBLE_DEVICES)
    mixed_precision: str = "no"  #: "no" (fp32), "bf16" or "fp16" autocast (fp16 with a gradient scaler)
    gradient_accumulation_steps: int = 1  #: micro-batches per optimizer step; batch_size stays the global batch
    gradient_checkpointing: bool = False  #: recompute activations in backward (less memory, ~30% more compute)
    #: glibc, process-wide: blocks ≥ this many bytes are returned to the OS on free (0: glibc's adaptive default); lower peak RSS, slower steps (README: LoRA memory)
    malloc_mmap_threshold: int = 0
    report_to: str = "tensorboard"  #: metrics tracker besides log.jsonl: "tensorboard" (output_dir/tb), "wandb", "mlflow", "none"

    #: Ranges of the fields (policylab.config; shown in --help, checked by :func:`check_config`).
    RANGES: ClassVar[dict] = {"max_steps": "[1, 2147483647]", "batch_size": "[1, 65536]",
                              "learning_rate": "(0, 10]", "weight_decay": "[0, inf)", "adam_betas": "[0, 1)",
                              "max_grad_norm": "[0, inf)", "lr_scheduler": ("constant", "linear"),
                              "max_prompt_length": "[1, 1048576]", "logging_steps": "[1, 2147483647]",
                              "lora_r": "[1, 65536]", "lora_alpha": "[1, 1048576]", "lora_dropout": "[0, 1)",
                              "device": ("auto", "cpu", "cuda"), "mixed_precision": ("no", "bf16", "fp16"),
                              "gradient_accumulation_steps": "[1, 65536]", "malloc_mmap_threshold": "[0, 33554432]",
                              "report_to": ("tensorboard", "wandb", "mlflow", "none")}
    #: Field whose value the rows of one process must be a multiple of (GRPO: num_generations).
    GROUP_FIELD: ClassVar[str | None] = None

    def __post_init__(self):
        check_config(self)
        self.micro_batch_size(1)
        if self.report_to in TRACKERS:
            import importlib.util

            module, extra = TRACKERS[self.report_to]
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"report_to={self.report_to!r} needs the {module} package: "
                                  f"pip install 'policylab[{extra}]' (or report_to: none)")

    def micro_batch_size(self, processes: int = 1) -> int:
        """Rows per micro-batch on one process: batch_size / (processes × gradient_accumulation_steps).
        ConfigError naming the fields when that is not a whole number (of GRPO groups)."""
        group = getattr(self, self.GROUP_FIELD) if self.GROUP_FIELD else 1
        if self.batch_size % group:
            raise ConfigError(f"{self.GROUP_FIELD}={group} (group size) does not divide batch_size={self.batch_size}")
        parts = processes * self.gradient_accumulation_steps
        if self.batch_size % (parts * group):
            what = f" × {self.GROUP_FIELD} ({group})" if self.GROUP_FIELD else ""
            raise ConfigError(f"batch_size={self.batch_size} (the global batch) is not divisible by processes ({processes}) "
                              f"× gradient_accumulation_steps ({self.gradient_accumulation_steps}){what}")
        return self.batch_size // parts


def make_accelerator(config):
    """``accelerate.Accelerator`` for ``config.device``: CUDA when present (``auto``) else CPU; joins the
    processes that ``accelerate launch`` / ``torchrun`` started (gloo on CPU). ConfigError before any
    model loads when the device is not there. Autocast and the fp16 scaler are the trainer's (torch.amp),
    so bf16 and fp16 also run (and are tested) on CPU."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    cuda = torch.cuda.is_available()
    if config.device == "cuda" and not cuda:
        raise ConfigError("device='cuda' but no CUDA device is visible (check CUDA_VISIBLE_DEVICES); use auto or cpu")
    cpu = config.device == "cpu" or not cuda
    try:
        return Accelerator(cpu=cpu, mixed_precision=config.mixed_precision)
    except ValueError:  # a previous Accelerator in this process had another precision: start over
        AcceleratorState._reset_state(reset_partial_state=False)
        return Accelerator(cpu=cpu, mixed_precision=config.mixed_precision)


def set_malloc_mmap_threshold(nbytes: int) -> None:
    """glibc's ``mallopt(M_MMAP_THRESHOLD, nbytes)`` for this process: blocks of ≥ nbytes get their own
    mapping, unmapped on free, instead of glibc's adaptive threshold, which rises after large frees and
    then keeps freed tensors' pages resident (glibc < 2.38 also cannot reuse an exactly-sized freed block
    for the next ``posix_memalign`` of that size, torch's CPU allocation, so such heaps grow).
    ConfigError naming the field where the C library is not glibc."""
    import ctypes

    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None or mallopt(-3, int(nbytes)) != 1:  # M_MMAP_THRESHOLD = -3; glibc returns 1 on success
        raise ConfigError(f"malloc_mmap_threshold={nbytes} needs glibc's mallopt (Linux with glibc); use 0 here")


def _finite(value: float, step: int, what: str) -> None:
    if not math.isfinite(value):
        raise DivergenceError(f"step {step}: {what} is {value}; stopped before saving (the last checkpoint is kept)")


class Trainer:
    """Loop, logging, checkpoints. ``self.records``/``self.labels`` hold the validated rows (loaded before
    the model); subclasses tokenize them in ``_prepare`` and define ``_micro_loss`` (or ``_step``)."""

    config_class: ClassVar[type] = TrainConfig
    progress_keys: ClassVar[tuple[str, ...]] = ("loss",)
    model_kind: ClassVar[str] = "causal"  #: what resolve_model loads: "causal" LM or "reward" model
    data_format: ClassVar[str] = "sft"  #: row shapes accepted (policylab.llm.data.FORMATS)
    #: how a stat combines over micro-batches and processes when not a unit-weighted mean
    stat_reductions: ClassVar[dict[str, str]] = {"num_tokens": "sum"}
    #: log.jsonl key -> the tracker's (TRL 1.16) metric name, where they differ
    tracker_names: ClassVar[dict[str, str]] = {}

    def __init__(self, model, tokenizer=None, config: TrainConfig | None = None, train_data=None):
        self.config = config = config or self.config_class()
        if train_data is None and config.train_file is None:
            raise InputError("no training data: give train_data or config.train_file")
        self.accelerator = make_accelerator(config)  # before any model: a bad device or batch fails first
        if config.malloc_mmap_threshold:
            set_malloc_mmap_threshold(config.malloc_mmap_threshold)
        self.rank, self.processes = self.accelerator.process_index, self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.micro_batch = config.micro_batch_size(self.processes)
        self.device = self.accelerator.device
        torch.manual_seed(config.seed)
        self.train_data = config.train_file if train_data is None else train_data
        # rows are validated before any weights load; a chat row needs the tokenizer's template
        self.records, self.labels = load_rows(self.train_data, self.data_format, config.split)
        self.model, self.tokenizer = resolve_model(
            model, tokenizer, seed=config.seed, kind=self.model_kind,
            before_weights=lambda tok: check_chat_template(self.records, self.labels, tok))
        if config.use_peft:
            self.model = add_lora(self.model, config, self.model_kind)
        if config.gradient_checkpointing:  # transformers ≥ 5 name, else the older one
            enable = getattr(self.model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model.to(self.device)
        self.model.train()
        self._prepare()  # validates data and builds reference pieces: all errors happen here
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay,
            fused=all(p.device.type in ("cpu", "cuda") for p in params),  # one kernel for all tensors
        )
        self.scaler = torch.amp.GradScaler(self.device.type) if config.mixed_precision == "fp16" else None
        self._keep_grad_buffers(params)
        self.step = 0
        self.history: list[dict] = []
        self._seed_process()

    # ------------------------------------------------------------------ processes
    def _seed_process(self) -> None:
        """With several processes, each seeds torch from (seed, rank, step) so they sample differently
        (and a resumed run continues deterministically with any process count). One process keeps
        the single stream seeded by ``seed`` (and restored from checkpoints)."""
        if self.processes > 1:
            torch.manual_seed(int(np.random.SeedSequence([self.config.seed, self.rank, self.step]).generate_state(1)[0]))

    def shard(self, rows: list) -> list:
        """This process's contiguous share of the global batch's rows (prompts for GRPO)."""
        n = len(rows) // self.processes
        return rows[self.rank * n : (self.rank + 1) * n]

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over processes (identity in one process)."""
        if self.processes == 1:
            return values
        return self.accelerator.reduce(values.to(self.device), "sum").cpu()

    def to_device(self, *tensors):
        """The tensors on the training device (a no-op on CPU)."""
        return tuple(t.to(self.device) for t in tensors)

    def autocast(self):
        """torch.autocast for bf16/fp16, nothing for fp32."""
        if self.config.mixed_precision == "no":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.mixed_precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    # ------------------------------------------------------------------ data
    def batch_indices(self, step: int, n: int | None = None) -> list[int]:
        """Rows of step ``step`` (the global batch, the same on every process): a seeded permutation per
        epoch, so a resumed run sees the same order whatever its process count."""
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

    # ------------------------------------------------------------------ one optimizer step
    def units(self, rows: list[int]) -> float:
        """Loss units (what the loss averages over) in ``rows`` of the global batch; default: rows (pairs)."""
        return float(len(rows))

    def _step(self, step: int) -> dict:
        """One optimizer step over the global batch (see the module docstring)."""
        rows = self.batch_indices(step)
        total = self.units(rows)  # (the global batch's loss units: every process computes the same)
        mine = self.shard(rows)
        self._zero_grad()
        parts = []
        for i in range(0, len(mine), self.micro_batch):
            with self.autocast():
                loss, units, stats = self._micro_loss(mine[i : i + self.micro_batch])
            self._backward(loss, units / total)
            parts.append((units, stats))
        grad_norm = self._optimizer_step()
        return {**self.reduce_stats(parts), "grad_norm": grad_norm}

    def reduce_stats(self, parts: list[tuple[float, dict]]) -> dict:
        """Stats of the global batch from (units, stats) of each micro-batch on each process: unit-weighted
        means, or the sum / min / max named in :attr:`stat_reductions`."""
        if len(parts) == 1 and self.processes == 1:
            return dict(parts[0][1])
        keys = list(parts[0][1])
        rows = self.gather(torch.tensor([[u, *(s[k] for k in keys)] for u, s in parts], dtype=torch.float64))
        units, out = rows[:, 0], {}  # (micro-batches × processes,)
        for j, k in enumerate(keys, 1):
            how, col = self.stat_reductions.get(k, "mean"), rows[:, j]
            out[k] = float(col.sum() if how == "sum" else col.min() if how == "min" else col.max() if how == "max"
                           else (units * col).sum() / units.sum())
        return out

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Rows of ``t`` from every process, in rank order (``t`` itself in one process)."""
        return t if self.processes == 1 else self.accelerator.gather(t.to(self.device)).cpu()

    def _keep_grad_buffers(self, params: list) -> None:
        """With LoRA the trainable tensors are a few MB: their gradient buffers are made here, next to the
        weights, and zeroed between steps instead of freed and re-made in each backward, where these small
        long-lived blocks would land between the step's large temporaries and keep the heap from
        coalescing (lower peak RSS; README, LoRA memory). A parameter that gets no gradient in a step
        still has none at the optimizer step (as with ``set_to_none``: AdamW skips it)."""
        self._kept_grads = bool(self.config.use_peft)
        self._touched: set[int] = set()  # ids of parameters that received a gradient this step
        if self._kept_grads:
            for p in params:
                p.grad = torch.zeros_like(p)
                p.register_post_accumulate_grad_hook(lambda p: self._touched.add(id(p)))

    def _zero_grad(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.optimizer.zero_grad(set_to_none=not self._kept_grads)
        self._touched.clear()

    def _backward(self, loss: torch.Tensor, share: float = 1.0) -> None:
        """Backward of ``loss × share`` (share = this micro-batch's fraction of the global batch's units).
        A non-finite loss raises DivergenceError before the weights change."""
        _finite(loss.item(), self.step + 1, "the loss")
        if share != 1.0:
            loss = loss * share
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()

    def _optimizer_step(self) -> float:
        """Sum the gradients over processes, clip, AdamW step; returns the pre-clip gradient norm.
        A non-finite norm raises DivergenceError (with fp16 the scaler skips that step instead)."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self._kept_grads:  # a kept buffer without a gradient this step is no gradient
            for p in params:
                if id(p) not in self._touched:
                    p.grad = None
        if self.processes > 1:  # one all-reduce of the flattened gradients
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            flat = self.accelerator.reduce(torch.cat([g.reshape(-1) for g in grads]), "sum")
            for p, g in zip(params, flat.split([g.numel() for g in grads])):
                p.grad = g.view_as(p)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped when the scaled gradients overflowed
            self.scaler.update()
            return norm
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
        self._seed_process()
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
        """Run until ``config.max_steps``; returns the logged history (also in output_dir/log.jsonl).
        Only the main process locks and writes output_dir; the others train alongside."""
        out = Path(self.config.output_dir)
        if not self.is_main:
            return self._train(out, resume_from)
        existed = out.exists()
        try:
            with RunLock(out):
                return self._train(out, resume_from)
        finally:
            if not existed and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # a run that failed before writing anything leaves nothing behind

    def _save_main(self) -> None:
        if self.is_main:
            self.save()
        self.accelerator.wait_for_everyone()

    def _train(self, out: Path, resume_from) -> list[dict]:
        from tqdm.auto import tqdm

        from policylab.llm.tracking import make_tracker

        cfg = self.config
        if resume_from is not None:
            self.resume(resume_from)
            if self.is_main:
                self._truncate_log(out / "log.jsonl")
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not (cfg.progress and self.is_main),
                   desc=type(self).__name__)
        log = tracker = None
        with deferred_interrupt() as interrupted:  # Ctrl-C: finish the step, save it, then stop
            try:
                while self.step < cfg.max_steps:
                    lr = self.lr_at(self.step)
                    stats = self._step(self.step)
                    self.step += 1
                    stats = {"step": self.step, "learning_rate": lr, **{k: float(v) for k, v in stats.items()}}
                    self.history.append(stats)
                    if self.step % cfg.logging_steps == 0 and self.is_main:
                        log = log or (out / "log.jsonl").open("a")  # opened on the first row: no empty leftovers
                        log.write(json.dumps(stats) + "\n")
                        log.flush()
                        tracker = tracker or make_tracker(cfg, out, self.step)
                        tracker.log(self.step, {self.tracker_names.get(k, k): v for k, v in stats.items() if k != "step"})
                        bar.set_postfix({k: f"{stats[k]:.3g}" for k in self.progress_keys if k in stats})
                    bar.update(1)
                    if interrupted[0]:
                        break
                    if cfg.save_steps and self.step % cfg.save_steps == 0 and self.step < cfg.max_steps:
                        self._save_main()
            finally:
                bar.close()
                if log is not None:
                    log.close()
                if tracker is not None:
                    tracker.close()
            self._save_main()
        if interrupted[0]:
            raise KeyboardInterrupt(f"interrupted at step {self.step}; checkpoint-{self.step} saved")
        return self.history
