"""Batching for causal LMs: padding token lists into tensors and the log-probs of completion tokens."""

from __future__ import annotations

import torch

from policylab.llm.logprobs import sequence_logprobs, token_entropy

__all__ = ["completion_logprobs", "join_right_padded", "pad"]


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
