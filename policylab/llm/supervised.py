"""Supervised fine-tuning on {"prompt", "completion"} rows: the warm start before DPO or GRPO.

    L(θ) = −(1/N) Σ_{i,t} log π_θ(y_{i,t} | x_i, y_{i,<t})      (N = completion tokens in the batch)

Only completion tokens (and their EOS) are trained on (TRL SFTTrainer's completion_only_loss); a
conversational ``{"messages": [...]}`` row is trained on every token after the first, as TRL does for
language-modeling rows (the chat template renders it; see :mod:`policylab.llm.data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from policylab.llm.batching import join_right_padded
from policylab.llm.data import tokenize_rows
from policylab.llm.logprobs import sequence_logprobs
from policylab.llm.models import max_positions
from policylab.llm.trainer import TrainConfig, Trainer

__all__ = ["SFTConfig", "SFTTrainer", "sft"]


@dataclass
class SFTConfig(TrainConfig):
    """SFT hyper-parameters (common fields in TrainConfig)."""

    output_dir: str = "runs/llm/sft"  #: checkpoints and log.jsonl go here
    learning_rate: float = 2e-5  #: AdamW learning rate (TRL SFTConfig default)
    max_length: int = 1024  #: prompt + completion tokens; longer completions are truncated (TRL default)

    RANGES: ClassVar[dict] = {"max_length": "[2, 1048576]"}


class SFTTrainer(Trainer):
    """Maximum likelihood on completions. ``SFTTrainer(model, tokenizer, config, records).train()``."""

    config_class = SFTConfig
    progress_keys = ("loss",)

    def _prepare(self):
        cfg = self.config
        self.prompt_ids, self.completion_ids = tokenize_rows(
            self.tokenizer, self.records, self.labels, ("completion",), cfg.max_prompt_length, cfg.max_length,
            max_positions(self.model))

    def units(self, rows) -> float:
        """Completion tokens (with EOS) of ``rows``: the loss is their mean over the global batch."""
        return float(sum(len(self.completion_ids[i]) for i in rows))

    def _micro_loss(self, rows):
        ids, attention, comp = self.to_device(*join_right_padded(
            [self.prompt_ids[i] for i in rows], [self.completion_ids[i] for i in rows], self.tokenizer.pad_token_id
        ))  # (B, T)
        logits = self.model(input_ids=ids, attention_mask=attention, use_cache=False).logits  # (B, T, V)
        logp = sequence_logprobs(logits, ids, comp)  # (B, T), 0 off the completion
        n_tokens = comp.sum()
        loss = -logp.sum() / n_tokens.clamp(min=1)
        return loss, float(n_tokens), {"loss": loss.item(), "num_tokens": float(attention.sum())}


def sft(model, tokenizer=None, records=None, **config) -> SFTTrainer:
    """One-call SFT: ``sft(model, tok, records, max_steps=50, learning_rate=3e-3)``; returns the trainer."""
    config.setdefault("progress", False)
    trainer = SFTTrainer(model, tokenizer, SFTConfig(**config), records)
    trainer.train()
    return trainer
