"""Reward models (lecture §7.3, the step DPO removes): Bradley–Terry training of a sequence classifier
with one label on {"prompt", "chosen", "rejected"[, "margin"]} rows, and a trained reward model as a
GRPO reward function.

Per step: a batch of pairs → [prompt+chosen rows; prompt+rejected rows] right-padded → one forward of
``AutoModelForSequenceClassification`` (num_labels = 1: the score at the last non-pad token) →
:func:`policylab.losses.bradley_terry_loss` (+ optional centering term) → AdamW. Logs TRL's names:
loss, accuracy, margin, min_reward, mean_reward, max_reward, num_tokens.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

import torch

from policylab.errors import DataError
from policylab.llm.batching import pad
from policylab.llm.data import encode_sequence, is_conversation, tokenize_rows
from policylab.llm.models import max_positions, resolve_model
from policylab.llm.trainer import TrainConfig, Trainer
from policylab.losses import bradley_terry_loss

__all__ = ["RewardConfig", "RewardModelReward", "RewardTrainer"]


@dataclass
class RewardConfig(TrainConfig):
    """Reward-model hyper-parameters (common fields in TrainConfig); defaults are TRL 1.16's RewardConfig."""

    output_dir: str = "runs/llm/reward"  #: checkpoints and log.jsonl go here
    learning_rate: float = 1e-4  #: AdamW learning rate (TRL RewardConfig default)
    max_length: int = 1024  #: prompt + completion tokens; longer completions are truncated
    center_rewards_coefficient: float | None = None  #: adds c·mean((r_w + r_l)²) to center rewards at 0 (None: off)

    RANGES: ClassVar[dict] = {"max_length": "[2, 1048576]", "center_rewards_coefficient": "[0, inf)"}


class RewardTrainer(Trainer):
    """``RewardTrainer("tiny" | folder | model, tokenizer, RewardConfig(...), records_or_jsonl).train()``.

    TRL 1.16 RewardConfig equivalents (single process): batch_size = per_device_train_batch_size (pairs),
    learning_rate, center_rewards_coefficient, max_length (here completions are truncated, TRL drops
    the pair); rows are tokenized as TRL does (plain text: prompt with BOS + completion + EOS; conversations
    through the chat template; implicit-prompt rows are whole sequences either way);
    an optional numeric "margin" column enters the loss as TRL's.
    """

    config_class = RewardConfig
    progress_keys = ("loss", "accuracy")
    model_kind = "reward"
    data_format = "reward"
    stat_reductions: ClassVar[dict[str, str]] = {"num_tokens": "sum", "min_reward": "min", "max_reward": "max"}

    def _prepare(self):
        tok, cfg, labels = self.tokenizer, self.config, self.labels
        self.prompt_ids, self.chosen_ids, self.rejected_ids = tokenize_rows(
            tok, self.records, labels, ("chosen", "rejected"), cfg.max_prompt_length, cfg.max_length,
            max_positions(self.model))
        self.margins = None
        if any("margin" in r for r in self.records):
            for r, where in zip(self.records, labels):
                m = r.get("margin")
                if isinstance(m, bool) or not isinstance(m, numbers.Real) or not math.isfinite(m):
                    raise DataError(f"{where}: field 'margin' must be a finite number in every row, got {m!r}")
            self.margins = torch.tensor([float(r["margin"]) for r in self.records])
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = tok.pad_token_id  # the classifier finds the last non-pad token

    def rewards(self, rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(r_chosen (b,), r_rejected (b,), attention mask (2b, T)) for pair indices ``rows``."""
        seqs = [self.prompt_ids[i] + self.chosen_ids[i] for i in rows] + \
               [self.prompt_ids[i] + self.rejected_ids[i] for i in rows]
        ids, attention = self.to_device(*pad(seqs, self.tokenizer.pad_token_id, "right"))  # (2b, T)
        scores = self.model(input_ids=ids, attention_mask=attention, use_cache=False).logits.squeeze(-1)  # (2b,)
        return (*scores.chunk(2), attention)

    def _micro_loss(self, rows):
        r_w, r_l, attention = self.rewards(rows)  # (b,), (b,)
        margin = None if self.margins is None else self.margins[rows].to(r_w.device)
        loss = bradley_terry_loss(r_w, r_l, margin)
        if self.config.center_rewards_coefficient is not None:
            loss = loss + self.config.center_rewards_coefficient * ((r_w + r_l) ** 2).mean()
        with torch.no_grad():
            both = torch.cat([r_w, r_l]).float()
            return loss, float(len(rows)), {
                "loss": loss.item(), "accuracy": (r_w > r_l).float().mean().item(),
                "margin": (r_w - r_l).mean().item(), "min_reward": both.min().item(),
                "mean_reward": both.mean().item(), "max_reward": both.max().item(),
                "num_tokens": float(attention.sum())}


class RewardModelReward:
    """A trained reward model as a GRPO reward function: ``f(prompts, completions) -> [r(x, y), ...]``.

    ``model``: a reward-model folder or run folder (its newest verified checkpoint), or an in-memory
    ``AutoModelForSequenceClassification`` with its ``tokenizer``. Scores prompt + completion + EOS, tokenized
    as :class:`RewardTrainer` does (a conversation through the chat template: prompt messages + the
    completion as an assistant message), ``batch_size`` sequences per forward, without gradient, in eval
    mode. An in-memory model is left as the caller had it: eval mode and ``config.pad_token_id`` (when
    unset) hold only during a call, then are restored; ``requires_grad`` is never touched (``no_grad``).
    """

    __name__ = "reward_model"

    def __init__(self, model, tokenizer=None, batch_size: int = 64):
        self.model, self.tokenizer = resolve_model(model, tokenizer, kind="reward")
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, prompts, completions, **_) -> list[float]:
        tok, model, out = self.tokenizer, self.model, []
        seqs = [encode_sequence(tok, p, [{"role": "assistant", "content": c}] if is_conversation(p) and isinstance(c, str)
                                else c) for p, c in zip(prompts, completions)]
        device = next(model.parameters()).device
        was_training, pad_id = model.training, getattr(model.config, "pad_token_id", None)
        model.eval()
        if pad_id is None:  # the classifier reads the score at the last non-pad token
            model.config.pad_token_id = tok.pad_token_id
        try:
            for i in range(0, len(seqs), self.batch_size):
                ids, attention = pad(seqs[i : i + self.batch_size], tok.pad_token_id, "right")  # (b, T)
                out += model(input_ids=ids.to(device), attention_mask=attention.to(device),
                             use_cache=False).logits[:, 0].tolist()
        finally:
            model.train(was_training)
            model.config.pad_token_id = pad_id
        return out
