"""Batching for causal LMs: padding token lists into tensors and the log-probs of completion tokens."""

from __future__ import annotations

import inspect

import torch

from policylab.llm.leanforward import shared_prompt_logits, supports_lean_forward
from policylab.llm.logprobs import sequence_logprobs, token_entropy

__all__ = ["cache_keyword", "completion_logprobs", "join_right_padded", "pad", "shared_prompt_logprobs"]


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
                        with_entropy: bool = False, positions_from_mask: bool = False):
    """(B, C) log π(completion tokens) for left-padded prompts (B, P) and right-padded completions (B, C).

    One forward over [prompt | completion] keeping only the last C + 1 logits (``logits_to_keep``),
    then :func:`sequence_logprobs`; entries where ``completion_mask`` is 0 are exactly 0. This is
    TRL GRPO's ``_get_per_token_logps`` (it also divides the logits by the sampling temperature).
    ``with_entropy=True`` returns (logp, entropy (B, C)) with the detached entropy of each
    completion position's next-token distribution (TRL's logged "entropy"). ``positions_from_mask=True``
    numbers each row's real tokens 0, 1, … as unpadded (else left pads shift them, as in TRL's GRPO).
    """
    C = completion_ids.shape[1]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P + C)
    attention = torch.cat([prompt_mask, completion_mask], dim=1)
    positions = {"position_ids": (attention.cumsum(1) - 1).clamp(min=0)} if positions_from_mask else {}
    logits = model(input_ids=input_ids, attention_mask=attention, logits_to_keep=C + 1, use_cache=False,
                   **positions).logits
    full_mask = torch.cat([torch.zeros_like(prompt_mask), completion_mask], dim=1)
    logp = sequence_logprobs(logits, input_ids, full_mask, temperature=temperature)[:, -C:]  # (B, C)
    if with_entropy:
        return logp, token_entropy(logits[:, :-1], temperature)  # (B, C), (B, C)
    return logp


def shared_prompt_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask):
    """(n·B, C) log π(completion tokens) for B left-padded prompts (B, P), each continued by n right-padded
    completions (n·B, C) stacked [every prompt's first completion; its second; …] (DPO: [chosen; rejected]).

        log π(y_t | x, y_<t) = log softmax(z_{t−1}(x ⊕ y_<t))[y_t],   with x's keys and values computed once

    Each prompt runs once (``use_cache=True``, explicit positions so left padding shifts nothing), its
    cached keys and values are repeated for its n completions, and the n·B completions run on top of
    them: :func:`completion_logprobs` on the repeated prompts, up to float rounding, at
    (P + n·C) / (n·(P + C)) of its tokens. Gradients flow through the cache into the prompt pass.
    The prompt's last logit predicts each completion's first token; masked entries are exactly 0.
    A plain float32 Llama runs all tokens in one lean pass (:mod:`policylab.llm.leanforward`); any other
    model runs two calls of its module, which must be a cache-capable Hugging Face causal LM without
    gradient checkpointing (which drops the cache).
    """
    n = completion_ids.shape[0] // prompt_ids.shape[0]
    if supports_lean_forward(model):  # plain float32 Llama: one lean pass over all tokens, the same numbers
        head, tail = shared_prompt_logits(model, prompt_ids, prompt_mask, completion_ids)  # (B, 1, V), (n·B, C, V)
    else:
        head, tail = _module_shared_prompt_logits(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
    # the first token from the prompt's last logit, the rest from the tail's: two calls, no (n·B, C + 1, V)
    # concatenation (at a real vocabulary that copy would be the step's largest tensor)
    first = head.repeat(n, 1, 1).expand(-1, 2, -1)  # (n·B, 2, V) view: its column 0 predicts token 0
    none = torch.zeros_like(completion_mask[:, :1])
    lp_first = sequence_logprobs(first, completion_ids[:, :1].repeat(1, 2), torch.cat([none, completion_mask[:, :1]], 1))
    lp_rest = sequence_logprobs(tail, completion_ids, torch.cat([none, completion_mask[:, 1:]], 1))  # column 0: 0
    return torch.cat([lp_first[:, 1:], lp_rest[:, 1:]], dim=1)  # (n·B, C)


def _module_shared_prompt_logits(model, prompt_ids, prompt_mask, completion_ids, completion_mask):
    """:func:`policylab.llm.leanforward.shared_prompt_logits` through the Hugging Face module (any cache-capable
    causal LM, PEFT wrappers included): the prompt pass, its cache tiled, the completion pass on top."""
    from transformers import DynamicCache

    B, C = prompt_ids.shape[0], completion_ids.shape[1]
    n = completion_ids.shape[0] // B
    cache = {cache_keyword(model): DynamicCache()}  # filled by the prompt pass, extended by the completions'
    positions = (prompt_mask.cumsum(1) - 1).clamp(min=0)  # (B, P): real tokens 0, 1, …; left pads 0
    head = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions, use_cache=True,
                 logits_to_keep=1, **cache).logits  # (B, 1, V)
    _tile_cache(next(iter(cache.values())), B, n)  # keys, values (B, …) → (n·B, …): row j continues prompt j mod B
    prompt_mask = prompt_mask.repeat(n, 1)  # (n·B, P)
    positions = prompt_mask.sum(1, keepdim=True) + torch.arange(C, device=prompt_ids.device)  # (n·B, C)
    tail = model(input_ids=completion_ids, attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
                 position_ids=positions, use_cache=True, **cache).logits  # (n·B, C, V): column s predicts token s + 1
    return head, tail


def _tile_cache(cache, batch: int, n: int) -> None:
    """Repeat every layer's cached keys and values n times along the batch, [all B; all B; …]. ``repeat``'s
    backward is a sum over the copies (``reorder_cache``'s index_select backward scatter-adds: ≈ 2 % of
    a medium DPO step); a cache without per-layer keys/values falls back to ``reorder_cache``."""
    layers = getattr(cache, "layers", None)
    if layers and all(hasattr(layer, "keys") and hasattr(layer, "values") for layer in layers):
        for layer in layers:
            layer.keys, layer.values = layer.keys.repeat(n, 1, 1, 1), layer.values.repeat(n, 1, 1, 1)
    else:
        cache.reorder_cache(torch.arange(batch).repeat(n))


def cache_keyword(model) -> str:
    """The keyword a Hugging Face causal LM's forward takes its KV cache by: "cache" (newer transformers)
    or "past_key_values", looking through PEFT wrappers and an adapters-disabled reference."""
    base = model if isinstance(model, torch.nn.Module) else model.model  # AdapterDisabled holds the PEFT model
    base = base.get_base_model() if hasattr(base, "get_base_model") else base
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
