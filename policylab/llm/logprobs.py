"""Per-token log-probabilities of a causal LM's completion tokens (the LLM as a policy over tokens)."""

from __future__ import annotations

import torch

from policylab.errors import InputError

__all__ = ["sequence_logprobs", "token_entropy"]


def sequence_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Per-token log-probs of the completion tokens, aligned with ``input_ids``:

        out[b, t] = log π(x_{b,t} | x_{b,<t}) = z_{b,t−1}[x_{b,t}] − logsumexp_v z_{b,t−1}[v]
                    if completion_mask[b, t] else 0

    where z_{b,s} = logits[b, s] / temperature are the logits the model produced *at* position s
    (which predict the token at s + 1). The shift is done here: pass the model's logits and the
    very ``input_ids`` it was run on, with ``completion_mask`` marking which tokens of ``input_ids``
    are completion tokens (1) and which are prompt or padding (0). Left padding (pads before the
    prompt) and right padding (pads after the completion) both work: only the mask decides.

    Shapes: ``input_ids`` and ``completion_mask`` are (B, T); ``logits`` is (B, L, V) with L ≤ T,
    the logits of the *last* L positions (the full sequence when L = T, or what a Hugging Face model
    returns with ``logits_to_keep=L``; L = C + 1 suffices for a completion of C tokens at the end).
    Tokens not predicted by those logits (t ≤ T − L) must have mask 0. Returns (B, T) in the logits'
    dtype, exactly 0 where the mask is 0; masked positions get exactly zero gradient (``torch.where``,
    not multiplication, so even a −inf there cannot leak NaN into the gradient).

    Memory: the target logit is gathered and logsumexp taken over ``chunk_rows`` sequences at a time,
    so no (B, L, V) log-softmax copy is kept for backward (logsumexp saves only its (L,) result) and
    the transient (exp, temperature scaling) is at most one chunk. ``chunk_rows=None`` picks the
    largest chunk of at most 2²² logits (16 MB in float32), at least one row.

    TRL 1.16: for a completion occupying the last C columns, ``out[:, -C:]`` equals TRL's
    ``selective_log_softmax(logits[:, -C-1:-1] / temperature, completion_ids)`` (GRPO), and
    ``out[:, 1:]`` TRL DPO's ``per_token_logps`` with ``shift_completion_mask = completion_mask[:, 1:]``.
    """
    if input_ids.ndim != 2:
        raise InputError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
    if tuple(completion_mask.shape) != tuple(input_ids.shape):
        raise InputError(
            f"completion_mask shape {tuple(completion_mask.shape)} != input_ids shape {tuple(input_ids.shape)}"
        )
    B, T = input_ids.shape
    if logits.ndim != 3 or logits.shape[0] != B or not 1 <= logits.shape[1] <= T:
        raise InputError(f"logits must be (B={B}, L<= T={T}, V), got shape {tuple(logits.shape)}")
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    L = logits.shape[1]
    first = T - L + 1  # first token position predicted by the given logits
    mask = completion_mask.bool()
    if mask[:, :first].any():
        raise InputError(
            f"completion_mask marks tokens before position {first}, which the given logits (last {L} "
            "positions) do not predict; pass more logits (e.g. logits_to_keep = completion length + 1)"
        )
    targets = input_ids[:, first:]  # (B, L−1)
    pred = logits[:, :-1]  # (B, L−1, V): row s predicts targets[:, s]
    if chunk_rows is None:
        chunk_rows = max(1, (1 << 22) // max(1, (L - 1) * logits.shape[-1]))
    rows = []
    for i in range(0, B, chunk_rows):
        z = pred[i : i + chunk_rows]
        if temperature != 1.0:
            z = z / temperature
        picked = z.gather(-1, targets[i : i + chunk_rows].unsqueeze(-1)).squeeze(-1)  # (b, L−1)
        rows.append(picked - torch.logsumexp(z, dim=-1))
    lp = torch.cat(rows, dim=0) if rows else pred.new_zeros((0, L - 1))  # (B, L−1)
    lp = torch.where(mask[:, first:], lp, torch.zeros((), dtype=lp.dtype, device=lp.device))
    return torch.cat([lp.new_zeros((B, first)), lp], dim=1)  # (B, T)


@torch.no_grad()
def token_entropy(logits: torch.Tensor, temperature: float = 1.0, chunk_rows: int = 1) -> torch.Tensor:
    """Entropy of each next-token distribution, for logging (no gradient):

        H_{b,s} = −Σ_v p_v log p_v = logsumexp(z) − Σ_v softmax(z)_v z_v,   z = logits[b, s] / temperature

    ``logits`` (B, L, V) → (B, L), computed ``chunk_rows`` sequences at a time.
    """
    if logits.ndim != 3:
        raise InputError(f"logits must be (B, L, V), got shape {tuple(logits.shape)}")
    out = []
    for i in range(0, logits.shape[0], chunk_rows):
        z = logits[i : i + chunk_rows].float() / temperature
        out.append(torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1))
    return torch.cat(out, dim=0)
