"""What SFT, DPO and GRPO share: config base, model/tokenizer resolution, batching, log-probs of
completions, and the training loop with logging and checkpoints (``checkpoint.py``); sampling
lives in ``sampling.py``.

Each algorithm file (``sft.py``, ``dpo.py``, ``grpo.py``) subclasses :class:`Trainer` once and
implements ``_prepare()`` (validate data before any work) and ``_step(step) -> dict`` (one update).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from policylab.errors import InputError, MissingFileError
from policylab.llm.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from policylab.llm.logprobs import sequence_logprobs, token_entropy

__all__ = [
    "TrainConfig",
    "Trainer",
    "completion_logprobs",
    "frozen_copy",
    "join_right_padded",
    "pad",
    "resolve_model",
]


@dataclass
class TrainConfig:
    """Fields every trainer shares (the algorithm configs add theirs)."""

    model: str = "tiny"  #: local Hugging Face folder, or "tiny" for policylab.llm.tiny's model
    train_file: str | None = None  #: JSONL training data (or pass records to the trainer)
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

    #: Ranges checked before the config is built (policylab.config; shown in --help).
    RANGES: ClassVar[dict] = {"max_steps": "[1, 2147483647]", "batch_size": "[1, 65536]",
                              "learning_rate": "(0, 10]", "weight_decay": "[0, inf)", "adam_betas": "[0, 1)",
                              "max_grad_norm": "[0, inf)", "lr_scheduler": ("constant", "linear"),
                              "max_prompt_length": "[1, 1048576]", "logging_steps": "[1, 2147483647]"}

    def __post_init__(self):
        self.adam_betas = tuple(self.adam_betas)
        if self.lr_scheduler not in ("constant", "linear"):
            raise InputError(f"lr_scheduler must be 'constant' or 'linear', got {self.lr_scheduler!r}")
        for name in ("max_steps", "batch_size", "max_prompt_length"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")


def resolve_model(model, tokenizer=None, seed: int = 0):
    """(model, tokenizer) from an in-memory model, a local folder path, or "tiny". Never downloads."""
    if isinstance(model, (str, os.PathLike)):
        if str(model) == "tiny":
            from policylab.llm.tiny import make_char_tokenizer, make_tiny_llama

            tokenizer = tokenizer or make_char_tokenizer()
            model = make_tiny_llama(len(tokenizer), seed=seed)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            folder = Path(model)
            if not folder.is_dir():
                raise MissingFileError(f"model folder {str(model)!r} not found (give a local folder or 'tiny')")
            if not (folder / "config.json").exists() and latest_checkpoint(folder) is not None:
                folder = latest_checkpoint(folder)  # a run folder: its latest checkpoint
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(folder, local_files_only=True)
            bar_was_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
            finally:
                if bar_was_on:
                    hf_logging.enable_progress_bar()
    if tokenizer is None:
        raise InputError("an in-memory model needs its tokenizer")
    if tokenizer.pad_token_id is None:
        raise InputError("the tokenizer has no pad token: set tokenizer.pad_token (e.g. to eos_token) first")
    if tokenizer.eos_token_id is None:
        raise InputError("the tokenizer has no eos token: completions could never end")
    return model, tokenizer


def frozen_copy(model):
    """Reference model: an in-memory deep copy in eval mode with requires_grad off."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def pad(seqs: list[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists to (N, max_len) ids and a 0/1 mask, on the "left" or the "right"."""
    width = max(len(s) for s in seqs)
    fill = [[pad_id] * (width - len(s)) for s in seqs]
    zeros = [[0] * (width - len(s)) for s in seqs]
    if side == "left":
        ids = [f + list(s) for f, s in zip(fill, seqs)]
        mask = [z + [1] * len(s) for z, s in zip(zeros, seqs)]
    else:
        ids = [list(s) + f for f, s in zip(fill, seqs)]
        mask = [[1] * len(s) + z for z, s in zip(zeros, seqs)]
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)  # one copy each


def join_right_padded(prompts: list[list[int]], completions: list[list[int]], pad_id: int):
    """[prompt | completion] rows right-padded: (input_ids, attention_mask, completion_mask), each (N, T)."""
    ids, attention = pad([p + c for p, c in zip(prompts, completions)], pad_id, "right")
    width = ids.shape[1]
    completion_mask = torch.tensor(
        [[0] * len(p) + [1] * len(c) + [0] * (width - len(p) - len(c)) for p, c in zip(prompts, completions)],
        dtype=torch.long,
    )
    return ids, attention, completion_mask


def completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature=1.0,
                        with_entropy: bool = False):
    """(B, C) log π(completion tokens) for left-padded prompts (B, P) and right-padded completions (B, C).

    One forward over [prompt | completion] keeping only the last C + 1 logits (``logits_to_keep``),
    then :func:`sequence_logprobs`; entries where ``completion_mask`` is 0 are exactly 0. This is
    TRL GRPO's ``_get_per_token_logps`` (it also divides the logits by the sampling temperature).
    ``with_entropy=True`` returns (logp, entropy (B, C)) with the detached entropy of each
    completion position's next-token distribution (TRL's logged "entropy").
    """
    C = completion_ids.shape[1]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P + C)
    attention = torch.cat([prompt_mask, completion_mask], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention, logits_to_keep=C + 1, use_cache=False).logits
    full_mask = torch.cat([torch.zeros_like(prompt_mask), completion_mask], dim=1)
    logp = sequence_logprobs(logits, input_ids, full_mask, temperature=temperature)[:, -C:]  # (B, C)
    if with_entropy:
        return logp, token_entropy(logits[:, :-1], temperature)  # (B, C), (B, C)
    return logp


# ------------------------------------------------------------------------------- the loop


class Trainer:
    """Loop, logging, checkpoints. Subclasses set ``self.records`` in ``_prepare`` and define ``_step``."""

    def __init__(self, model, tokenizer=None, config: TrainConfig | None = None, train_data=None):
        self.config = config = config or self.config_class()
        torch.manual_seed(config.seed)
        self.model, self.tokenizer = resolve_model(model, tokenizer, seed=config.seed)
        self.model.train()
        if train_data is None and config.train_file is None:
            raise InputError("no training data: give train_data or config.train_file")
        self.train_data = config.train_file if train_data is None else train_data
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
        """Backward, clip, AdamW step at lr_at(self.step); returns the pre-clip gradient norm."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        return float(norm)

    def save(self, directory=None) -> Path:
        directory = directory or Path(self.config.output_dir) / f"checkpoint-{self.step}"
        path = save_checkpoint(directory, self.model, self.tokenizer, self.optimizer, self.step, self.config)
        limit = self.config.save_total_limit
        if limit:
            ckpts = sorted(Path(self.config.output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            for old in ckpts[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def resume(self, checkpoint="latest") -> int:
        """Load a checkpoint folder (or the latest in output_dir); training continues from its step."""
        if checkpoint == "latest":
            checkpoint = latest_checkpoint(self.config.output_dir)
            if checkpoint is None:
                return self.step
        state = load_checkpoint(checkpoint, self.model, self.optimizer)
        self.step = int(state["step"])
        return self.step

    def train(self, resume_from=None) -> list[dict]:
        """Run until ``config.max_steps``; returns the logged history (also in output_dir/log.jsonl)."""
        from tqdm.auto import tqdm

        cfg = self.config
        if resume_from is not None:
            self.resume(resume_from)
        out = Path(cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not cfg.progress, desc=type(self).__name__)
        with (out / "log.jsonl").open("a") as log:
            while self.step < cfg.max_steps:
                lr = self.lr_at(self.step)
                stats = self._step(self.step)
                self.step += 1
                stats = {"step": self.step, "learning_rate": lr, **{k: float(v) for k, v in stats.items()}}
                self.history.append(stats)
                if self.step % cfg.logging_steps == 0:
                    log.write(json.dumps(stats) + "\n")
                    log.flush()
                    bar.set_postfix({k: f"{stats[k]:.3g}" for k in self.progress_keys if k in stats})
                bar.update(1)
                if cfg.save_steps and self.step % cfg.save_steps == 0 and self.step < cfg.max_steps:
                    self.save()
        bar.close()
        self.save()
        return self.history
