"""Batched sampling of completions with a KV cache (GRPO rollouts, greedy evaluation)."""

from __future__ import annotations

import torch

from policylab.errors import DivergenceError
from policylab.llm.batching import cache_keyword, pad
from policylab.llm.fastdecode import LlamaDecoder, supports_fast_decode
from policylab.llm.replay import MAX_TRACE_BYTES, DecodeTrace, supports_replay, trace_bytes

__all__ = ["generate", "sample_next_token"]


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0):
    """Sample one token per row from (B, V) logits: softmax(z / T) restricted to the top-k tokens and
    to the smallest set with cumulative probability ≥ top_p (the nucleus). temperature 0 → argmax.

    The draw is the exponential race v* = argmax_v p_v / E_v, E_v ~ Exp(1) i.i.d., which picks v with
    probability p_v (P(E_v / p_v is the least) = p_v / Σ p); it is how ``torch.multinomial`` draws one
    sample, here on one buffer, without multinomial's per-call validation."""
    if temperature == 0:
        return logits.argmax(-1)
    z = logits.float()
    if temperature != 1.0:
        z = z / temperature
    if not bool(torch.isfinite(z).all()):
        raise DivergenceError("sampling: the model's next-token logits are not finite (the weights diverged)")
    if top_k and top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[:, -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p < 1.0:
        sorted_z, order = torch.sort(z, descending=True, dim=-1)
        probs = torch.softmax(sorted_z, -1)
        drop = probs.cumsum(-1) - probs > top_p  # tokens entirely past the nucleus
        z = z.scatter(-1, order, sorted_z.masked_fill(drop, float("-inf")))
    race = torch.empty_like(z).exponential_()  # E (B, V)
    return torch.softmax(z, -1).div_(race).argmax(-1)


def _stepper(model, p_ids: torch.Tensor, p_mask: torch.Tensor, max_new_tokens: int, record: bool | dict = False):
    """``step(new_ids (B, T)) -> next-token logits (B, V)`` with a KV cache: the first call is the
    prefill of the prompts, each later call appends one token per row. Uses the lean Llama decoder
    when the model is a plain Llama, else the model's forward with a ``DynamicCache``. Positions follow
    HF generate (cumsum of the attention mask − 1); no mask at all when no row is padded. ``record``:
    the lean decoder keeps its forward values (``step.decoder.trace``) when no prompt is padded (then the
    positions are those of a training forward) and the model is a float32 Llama without biases or dropout."""
    B, P = p_ids.shape
    ragged = not bool(p_mask.all())
    state = {
        "mask": p_mask if ragged else None,
        "pos": (p_mask.cumsum(1) - 1).clamp(min=0) if ragged else torch.arange(P).expand(B, P),
        "first": True,
    }
    fast = supports_fast_decode(model)
    decoder = None
    if fast:
        keep = ((record is True or isinstance(record, dict)) and not ragged and supports_replay(model)
                and trace_bytes(model, B, P + max_new_tokens) <= MAX_TRACE_BYTES)
        decoder = LlamaDecoder(model, B, P + max_new_tokens, record=record if keep else False)
    else:
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        key = cache_keyword(model)

    def step(ids: torch.Tensor) -> torch.Tensor:
        if not state["first"]:
            state["pos"] = state["pos"][:, -1:] + 1
            if ragged:
                state["mask"] = torch.cat([state["mask"], torch.ones((B, 1), dtype=p_mask.dtype)], dim=1)
        state["first"] = False
        if fast:
            return decoder(ids, state["pos"], state["mask"])
        out = model(input_ids=ids, attention_mask=state["mask"], position_ids=state["pos"] if ragged else None,
                    use_cache=True, logits_to_keep=1, **{key: cache})
        return out.logits[:, -1]

    step.decoder = decoder
    return step


@torch.no_grad()
def generate(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, do_sample: bool = True,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, use_hf_generate: bool = False,
             record: bool | dict = False):
    """Batched sampling with the KV cache. Returns (prompt_ids (B, P) left-padded, prompt_mask,
    completion_ids (B, C), completion_mask (B, C), texts): the completion mask covers the tokens up to
    and including the first EOS (as TRL), and texts are decoded without special tokens. ``record=True``
    appends a :class:`~policylab.llm.replay.DecodeTrace` of the decoder's forward values (None where the
    lean decoder cannot keep one), from which :mod:`policylab.llm.replay` takes gradients without a
    second forward; ``record`` may be the buffers of a released trace (``DecodeTrace.release()``) to reuse.

    The default decoder is a plain sampling loop that stops when every row has emitted EOS, over
    :func:`_stepper` (a lean static-cache decoder for Llama models, the model's own forward with a
    ``DynamicCache`` otherwise); ``use_hf_generate=True`` calls ``model.generate`` instead (same
    distribution, different random stream)."""
    p_ids, p_mask = pad(prompt_ids, tokenizer.pad_token_id, "left")  # (B, P)
    device = next(model.parameters()).device
    if device.type != "cpu":  # the lean decoder below keeps its cache on the CPU
        p_ids, p_mask, use_hf_generate = p_ids.to(device), p_mask.to(device), True
    eos, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    trace = None
    if use_hf_generate:
        kw = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k} if do_sample else {
            "do_sample": False}
        out = model.generate(input_ids=p_ids, attention_mask=p_mask, max_new_tokens=max_new_tokens,
                             pad_token_id=pad_id, eos_token_id=eos, use_cache=True, **kw)
        c_ids = out[:, p_ids.shape[1]:]  # (B, C)
    else:
        step = _stepper(model, p_ids, p_mask, max_new_tokens, record)
        logits = step(p_ids)  # (B, V): prefill
        B = p_ids.shape[0]
        c_ids = torch.full((B, max_new_tokens), pad_id, dtype=torch.long)
        kept = step.decoder is not None and step.decoder.trace is not None
        if kept:  # the tokens the decoder is fed (also past a row's EOS) and the logits each was drawn from
            fed = torch.full((B, max_new_tokens), pad_id, dtype=torch.long)
            all_logits = torch.empty((B, max_new_tokens, logits.shape[-1]), dtype=logits.dtype)
        done = torch.zeros(B, dtype=torch.bool)
        for t in range(max_new_tokens):
            nxt = sample_next_token(logits, temperature if do_sample else 0.0, top_p, top_k)  # (B,)
            if kept:
                fed[:, t], all_logits[:, t] = nxt, logits
            c_ids[:, t] = nxt.masked_fill(done, pad_id)
            done |= nxt == eos
            if bool(done.all()) or t == max_new_tokens - 1:
                c_ids = c_ids[:, : t + 1]
                break
            logits = step(nxt[:, None])
        if kept:  # fed positions: the prompt and all completion tokens but the last
            C = c_ids.shape[1]
            trace = DecodeTrace.from_decoder(step.decoder, torch.cat([p_ids, fed[:, : C - 1]], 1), all_logits[:, :C],
                                             model)
    model.train(was_training)
    is_eos = c_ids == eos
    first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], c_ids.shape[1], dtype=torch.long))
    c_mask = (torch.arange(c_ids.shape[1], device=c_ids.device)[None, :] <= first_eos[:, None]).long()  # (B, C)
    c_ids = c_ids.masked_fill(c_mask == 0, pad_id)
    texts = tokenizer.batch_decode(c_ids, skip_special_tokens=True)
    if record is False:
        return p_ids, p_mask, c_ids, c_mask, texts
    return p_ids, p_mask, c_ids, c_mask, texts, trace
