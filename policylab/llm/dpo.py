"""Direct Preference Optimization (Rafailov et al. 2023; lecture §7.3) on {"prompt", "chosen", "rejected"}.

Per step: a batch of pairs → each prompt runs once and its chosen and rejected completions on top
of its cached keys and values (:func:`policylab.llm.batching.shared_prompt_logprobs`; the numbers of
one forward over [prompt ⊕ chosen; prompt ⊕ rejected] at fewer tokens) → sequence log-probs (sums
over completion tokens) → reference log-probs (the same on a frozen in-memory copy, or values
precomputed once before training) → :func:`policylab.losses.dpo_loss` → AdamW. Logs TRL's names:
loss, rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen, logps/rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from policylab.errors import InputError
from policylab.llm.batching import completion_logprobs, pad, shared_prompt_logprobs
from policylab.llm.data import check_chat_template, load_rows, tokenize_rows
from policylab.llm.leanforward import supports_lean_forward
from policylab.llm.models import max_positions, reference_model
from policylab.llm.trainer import TrainConfig, Trainer
from policylab.losses import dpo_loss, ipo_loss

__all__ = ["LOSSES", "SHARED_PROMPT_MIN_WORK", "DPOConfig", "DPOTrainer"]

#: A batch runs each prompt once (:func:`shared_prompt_logprobs`) when its prompt tokens × the model's
#: parameters reach this; below it (tiny models) the module's second call costs more than the prompt
#: tokens it saves, and the one concatenated forward runs instead (the same numbers either way). A model
#: with the lean one-pass forward (:func:`policylab.llm.leanforward.supports_lean_forward`) shares the
#: prompt at any size (at the tiny model's 8 pairs × 32 tokens: forward + backward −18 %).
SHARED_PROMPT_MIN_WORK = 10**8

#: Preference losses by name (DPOConfig.loss_type), one uniform call each:
#: (chosen, rejected, ref_chosen, ref_rejected, chosen_lengths, rejected_lengths, config) -> DPOOutput.
LOSSES = {
    "sigmoid": lambda c, r, rc, rr, lc, lr, cfg: dpo_loss(c, r, rc, rr, cfg.beta, cfg.label_smoothing),
    "ipo": lambda c, r, rc, rr, lc, lr, cfg: ipo_loss(c, r, rc, rr, cfg.beta, lc, lr),
}


@dataclass
class DPOConfig(TrainConfig):
    """DPO hyper-parameters (common fields in TrainConfig); defaults from the paper / TRL 1.16."""

    output_dir: str = "runs/llm/dpo"  #: checkpoints and log.jsonl go here
    learning_rate: float = 1e-6  #: AdamW learning rate (TRL DPOConfig default; paper 5e-7)
    beta: float = 0.1  #: β, strength of the implicit KL to π_ref (paper and TRL: 0.1)
    loss_type: str = "sigmoid"  #: "sigmoid" (DPO) or "ipo" (IPO, length-normalized as TRL)
    label_smoothing: float = 0.0  #: cDPO ε: assumed probability that a preference label is flipped
    max_length: int = 1024  #: prompt + completion tokens; longer completions are truncated (TRL default)
    precompute_ref_logps: bool = False  #: compute reference log-probs once before training, drop π_ref

    RANGES: ClassVar[dict] = {"beta": "(0, inf)", "loss_type": tuple(LOSSES), "label_smoothing": "[0, 0.5)",
                              "max_length": "[2, 1048576]"}


class DPOTrainer(Trainer):
    """``DPOTrainer(model, tokenizer, DPOConfig(...), records_or_jsonl).train()``.

    TRL 1.16 DPOConfig equivalents (single process): batch_size = per_device_train_batch_size
    (pairs), beta, loss_type "sigmoid"/"ipo", label_smoothing (only used by "sigmoid" here: cDPO),
    max_length (here only completions are truncated; a prompt that does not fit is an error),
    precompute_ref_logps = precompute_ref_log_probs, lr_scheduler "linear" = HF default. Rows are
    tokenized as TRL does (:mod:`policylab.llm.data`): plain text as prompt (with BOS) + completion + EOS,
    conversations through the chat template; rows with only chosen/rejected get the implicit prompt.
    Each prompt runs once for both its completions when that pays (TRL runs it twice; the same
    numbers); then with dropout (e.g. ``lora_dropout``) the prompt's mask is shared by both rows.
    """

    config_class = DPOConfig
    progress_keys = ("loss", "rewards/accuracies", "rewards/margins")
    data_format = "dpo"

    # ------------------------------------------------------------------ data and reference
    def _prepare(self):
        self.data = self.tokenize(self.records, self.labels)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.ref_model = None
        self.ref_logps = None  # (N, 2): precomputed [ref_chosen, ref_rejected] per row
        if self.config.precompute_ref_logps:
            ref_c, ref_r, _, _ = self.logps(self.model, range(len(self.records)))
            self.ref_logps = torch.stack([ref_c, ref_r], dim=1)  # (N, 2)
        else:
            self.ref_model = reference_model(self.model)

    def tokenize(self, records, labels):
        """(prompt_ids, chosen_ids, rejected_ids) token lists of validated rows, as TRL tokenizes them
        (:func:`policylab.llm.data.tokenize_rows`); long prompts raise, naming the row."""
        cfg = self.config
        return tokenize_rows(self.tokenizer, records, labels, ("chosen", "rejected"), cfg.max_prompt_length,
                             cfg.max_length, max_positions(self.model))

    def batch(self, rows, data=None):
        """Prompts left-padded once, (prompt_ids, prompt_mask) (b, P), and the completions
        [chosen rows; rejected rows] right-padded, (completion_ids, completion_mask) (2b, C)."""
        prompt_ids, chosen_ids, rejected_ids = self.data if data is None else data
        pad_id = self.tokenizer.pad_token_id
        completions = [chosen_ids[j] for j in rows] + [rejected_ids[j] for j in rows]
        return (*pad([prompt_ids[j] for j in rows], pad_id, "left"), *pad(completions, pad_id, "right"))

    def sequence_logps(self, model, batch):
        """(chosen, rejected, chosen_lengths, rejected_lengths), each (b,), where
        chosen = Σ_t log π(y_w,t | x, y_w,<t) over completion tokens (EOS included), same for rejected.
        Each prompt runs once for both completions, unless the batch is too small for that to pay
        (:data:`SHARED_PROMPT_MIN_WORK`) or gradient checkpointing is on (it keeps no cache)."""
        prompts, prompt_mask, completions, completion_mask = batch  # (b, P), (b, P), (2b, C), (2b, C)
        small = int(prompt_mask.sum()) * self.n_params < SHARED_PROMPT_MIN_WORK and not supports_lean_forward(model)
        if self.config.gradient_checkpointing or small:
            logp = completion_logprobs(model, prompts.repeat(2, 1), prompt_mask.repeat(2, 1), completions,
                                       completion_mask, positions_from_mask=True)
        else:
            logp = shared_prompt_logprobs(model, prompts, prompt_mask, completions, completion_mask)
        seq = logp.sum(-1)  # (2b,) from (2b, C)
        return (*seq.chunk(2), *completion_mask.sum(-1).chunk(2))

    @torch.no_grad()
    def logps(self, model, rows, data=None, chunk: int = 64):
        """:meth:`sequence_logps` without gradient over many rows, ``chunk`` pairs per forward."""
        rows = list(rows)
        parts = [self.sequence_logps(model, self.to_device(*self.batch(rows[i : i + chunk], data)))
                 for i in range(0, len(rows), chunk)]
        return tuple(torch.cat(p) for p in zip(*parts))

    def _loss(self, chosen, rejected, ref_c, ref_r, len_c, len_r):
        return LOSSES[self.config.loss_type](chosen, rejected, ref_c, ref_r, len_c, len_r, self.config)

    # ------------------------------------------------------------------ one update
    def _micro_loss(self, rows):
        batch = self.to_device(*self.batch(rows))  # prompts (b, P) and mask, completions (2b, C) and mask
        if self.ref_logps is not None:
            ref_c, ref_r = self.ref_logps[rows].unbind(1)
        else:  # the reference first: its freed temporaries are reused by the policy's saved activations,
            # and the backward runs right after the forward it differentiates (fewer page faults, −2–4 %)
            with torch.no_grad():
                ref_c, ref_r, _, _ = self.sequence_logps(self.ref_model, batch)
        chosen, rejected, len_c, len_r = self.sequence_logps(self.model, batch)  # (b,) each
        out = self._loss(chosen, rejected, ref_c, ref_r, len_c, len_r)
        return out.loss, float(len(rows)), {
            **preference_stats(out),
            "logps/chosen": chosen.detach().mean().item(),
            "logps/rejected": rejected.detach().mean().item(),
            "num_tokens": float(2 * batch[1].sum() + batch[3].sum()),  # TRL's num_tokens: [p ⊕ y_w; p ⊕ y_l] mask
        }

    @torch.no_grad()
    def evaluate(self, records=None, ref_model=None) -> dict:
        """Loss and rewards/* (accuracies, margins...) on ``records`` (default: the training rows)
        against ``ref_model`` (default: the trainer's reference, or the precomputed values)."""
        data, n = self.data, len(self.records)
        if records is not None:
            records, labels = load_rows(records, "dpo")
            check_chat_template(records, labels, self.tokenizer)
            data, n = self.tokenize(records, labels), len(records)
        chosen, rejected, len_c, len_r = self.logps(self.model, range(n), data=data)
        ref_model = ref_model or self.ref_model
        if ref_model is not None:
            ref_c, ref_r, _, _ = self.logps(ref_model, range(n), data=data)
        elif records is None:
            ref_c, ref_r = self.ref_logps.unbind(1)
        else:
            raise InputError("precomputed reference log-probs cover the training rows only: pass ref_model")
        return preference_stats(self._loss(chosen, rejected, ref_c, ref_r, len_c, len_r))


def preference_stats(out) -> dict:
    """TRL's DPO log names from a :class:`policylab.losses.DPOOutput`."""
    margins = out.chosen_rewards - out.rejected_rewards
    return {
        "loss": out.loss.item(),
        "rewards/chosen": out.chosen_rewards.mean().item(),
        "rewards/rejected": out.rejected_rewards.mean().item(),
        "rewards/accuracies": (margins > 0).float().mean().item(),
        "rewards/margins": margins.mean().item(),
    }
