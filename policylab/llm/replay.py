"""Gradients of sampled completions' log-probs from the decoder's own forward values (no second forward).

GRPO with μ = 1 samples with the current weights and then differentiates log π_θ of the same tokens under
the same weights: the training forward recomputes, up to float rounding, what the decoder computed
token by token (at 10.7M parameters, batch 8 × 256 tokens, a third of the update). When the lean decoder
records its values (:class:`DecodeTrace`: per layer the rotated queries, the cached keys and values, the
o-projection, gate|up and down-projection outputs; the logits), the backward graph is rebuilt around them:

    x₀ = E[ids];   per layer   h = RMSNorm(x),  (q, k, v) ⇐ RoPE(h [W_q; W_k; W_v]ᵀ),  a = attn(q, k, v),
                               x ← x + (o ⇐ a W_oᵀ),  (g, u) ⇐ RMSNorm(x) [W_g; W_u]ᵀ,  x ← x + (d ⇐ (silu(g)·u) W_dᵀ)
    z ⇐ RMSNorm(x) W_headᵀ

where each "⇐" is a :class:`torch.autograd.Function` whose forward returns the recorded value (no matmul)
and whose backward is the operation's (∂h = ∂y W, ∂W = ∂yᵀ h for a linear map; RoPE's transpose), the
attention runs the flash kernel forward (its output and log-sum-exp are what its backward needs: cheaper
than recording them per token), and the element-wise steps (embedding, RMSNorm, residual adds, SwiGLU)
run as usual under autograd. Log-probs, entropies and gradients equal the model forward's up to float
rounding (tested against it). A trace is valid only while the weights are those that sampled (the
parameters' version counters) and the prompts were not padded (then positions are 0…T−1, as in the
training forward); otherwise the caller runs the model's forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from policylab.llm.logprobs import sequence_logprobs, token_entropy

__all__ = ["MAX_TRACE_BYTES", "DecodeTrace", "supports_replay", "trace_bytes", "trace_logprobs"]

#: largest trace recorded (bytes); above it the update runs the model's forward instead. The recorded
#: values are about half of what a training forward keeps for backward, but they are held from sampling on
MAX_TRACE_BYTES = 1 << 30


def supports_replay(model) -> bool:
    """A float32 Llama without linear biases or attention dropout (what :func:`trace_logprobs` rebuilds)."""
    cfg = model.config
    return (model.model.embed_tokens.weight.dtype == torch.float32 and not getattr(cfg, "attention_bias", False)
            and not getattr(cfg, "mlp_bias", False) and not getattr(cfg, "attention_dropout", 0.0))


def trace_bytes(model, batch: int, max_len: int) -> int:
    """Bytes a :class:`DecodeTrace` of ``batch`` rows and ``max_len`` positions takes: per layer and position
    q, o, gate|up, down, the keys and values; the logits of every position."""
    cfg = model.config
    D = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_layer = (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * D + 2 * cfg.hidden_size + 2 * cfg.intermediate_size
    return 4 * batch * max_len * (cfg.num_hidden_layers * per_layer + cfg.vocab_size)


def _versions(model) -> tuple[int, ...]:
    return tuple(p._version for p in model.parameters())


@dataclass
class DecodeTrace:
    """The lean decoder's forward values for B rows of T = P + C − 1 fed positions (prompt and all but the
    last completion token; no padded prompt, so positions are 0…T−1 as in a training forward)."""

    ids: torch.Tensor  #: (B, T) the tokens fed
    values: list  #: per layer, name -> recorded (B, T, …) view: q (B, H, T, D), o, gate_up, down
    keys: torch.Tensor  #: (layers, B, KV, T, D) rotated keys
    vals: torch.Tensor  #: (layers, B, KV, T, D)
    logits: torch.Tensor  #: (B, C, V) the logits each completion token was sampled from
    cos: torch.Tensor  #: (T, D)
    signed_sin: torch.Tensor  #: (T, D) [−sin₁, sin₂]
    scale: float
    versions: tuple | None  #: the parameters' version counters when sampled (None once released)
    buffers: dict  #: the decoder's "kv" and "trace" tensors the views above read

    @classmethod
    def from_decoder(cls, dec, ids: torch.Tensor, logits: torch.Tensor, model) -> DecodeTrace:
        T, H = ids.shape[1], dec.n_heads
        names, widths = zip(*dec.trace_columns.items())
        values = []
        for buf in dec.trace:  # (max_len, B, columns) → named (B, T, ·) views
            layer = dict(zip(names, buf[:T].transpose(0, 1).split(widths, -1)))
            layer["q"] = layer["q"].unflatten(-1, (H, -1)).transpose(1, 2)  # (B, H, T, D)
            values.append(layer)
        return cls(ids, values, dec.kv[:, 0, :, :, :T], dec.kv[:, 1, :, :, :T], logits, dec.cos[:T],
                   dec.sin[:T], dec.scale, _versions(model), dec.buffers)

    def valid_for(self, model) -> bool:
        """True while ``model``'s parameters are the ones that sampled (no optimizer step since) and the
        trace has not been released."""
        return self.versions is not None and self.versions == _versions(model)

    def release(self) -> dict:
        """Invalidate the trace and return its buffers, for the next ``generate(..., record=buffers)`` to
        write into (no fresh pages to fault in per step)."""
        self.versions, self.values = None, []
        return self.buffers


def _swap_halves(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat([x[..., h:], x[..., :h]], -1)


class _Linear(torch.autograd.Function):
    """y = h Wᵀ, W = [W₁; W₂; …]: forward returns the recorded y; backward ∂h = ∂y W, ∂Wₖ = ∂yₖᵀ h."""

    @staticmethod
    def forward(ctx, h, y, *weights):
        ctx.save_for_backward(h, *weights)
        return y.clone(memory_format=torch.contiguous_format)  # element-wise ops downstream run faster on it

    @staticmethod
    def backward(ctx, dy):
        h, *weights = ctx.saved_tensors
        w = weights[0] if len(weights) == 1 else torch.cat(weights)
        dw = dy.flatten(0, -2).T @ h.flatten(0, -2)  # (out, in)
        return (dy @ w, None, *dw.split([x.shape[0] for x in weights]))


class _QKV(torch.autograd.Function):
    """(q, k, v) = RoPE-rotated q, k and v of h [W_q; W_k; W_v]ᵀ, as (B, heads, T, D): forward returns the
    recorded tensors; backward rotates ∂q, ∂k back (RoPE's transpose ∂x = ∂y·cos + swap(∂y·[−sin₁, sin₂]))
    and applies the linear backward to [∂q | ∂k | ∂v]."""

    @staticmethod
    def forward(ctx, h, q, k, v, cos, signed_sin, wq, wk, wv):
        ctx.save_for_backward(h, cos, signed_sin, wq, wk, wv)
        # contiguous copies of the strided records: the attention kernels run faster on them
        return tuple(t.clone(memory_format=torch.contiguous_format) for t in (q, k, v))

    @staticmethod
    def backward(ctx, dq, dk, dv):
        h, cos, sin, wq, wk, wv = ctx.saved_tensors
        (B, H, T, D), KV = dq.shape, dk.shape[1]
        dy = dq.new_empty(B, T, (H + 2 * KV) * D)  # [∂q | ∂k | ∂v] before RoPE, written in place
        for g, lo, hi in ((dq, 0, H), (dk, H, H + KV)):
            torch.addcmul(_swap_halves(g * sin), g, cos, out=dy[..., lo * D : hi * D].unflatten(-1, (-1, D)).transpose(1, 2))
        dy[..., (H + KV) * D :].unflatten(-1, (KV, D)).copy_(dv.transpose(1, 2))
        dw = dy.flatten(0, 1).T @ h.flatten(0, 1)
        dh = dy @ torch.cat([wq, wk, wv])
        return (dh, None, None, None, None, None, *dw.split([wq.shape[0], wk.shape[0], wv.shape[0]]))


class _RMSNorm(torch.autograd.Function):
    """y = w ⊙ x·r, r = 1/√(mean(x²) + ε) (LlamaRMSNorm), in fewer passes over x than its autograd graph:
    with x̂ = x·r, p = ∂y ⊙ x̂ and g = ∂y ⊙ w, ∂w = Σ_rows p and ∂x = r·(g − x̂·mean(g ⊙ x̂)), where
    mean(g ⊙ x̂) = (p · w)/n is one matrix-vector product."""

    @staticmethod
    def forward(ctx, x, w, eps):
        n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        r = torch.addcmul(torch.tensor(eps, dtype=x.dtype), n, n, value=1.0 / x.shape[-1]).rsqrt_()  # (…, 1)
        ctx.save_for_backward(x, w, r)
        return torch.mul(x, r).mul_(w)

    @staticmethod
    def backward(ctx, dy):
        x, w, r = ctx.saved_tensors
        xh = x * r
        p = dy * xh
        s = (p @ w).unsqueeze(-1)  # (…, 1): n·mean(g ⊙ x̂)
        return torch.addcmul(dy * w, xh, s, value=-1.0 / x.shape[-1]).mul_(r), p.flatten(0, -2).sum(0), None


def _rms(x: torch.Tensor, norm) -> torch.Tensor:
    return _RMSNorm.apply(x, norm.weight, norm.variance_epsilon)


class _Attention(torch.autograd.Function):
    """a = softmax(q kᵀ/√D + causal) v as (B, T, H·D), by the flash-attention kernel (its output and
    log-sum-exp are what its backward needs); backward is that kernel's (grouped-query heads: keys and
    values repeated per query head, their gradients summed back)."""

    @staticmethod
    def forward(ctx, q, k, v, scale):
        B, H, T, D = q.shape
        rep = H // k.shape[1]
        if rep > 1:
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True, scale=scale)[:2]
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale, ctx.rep = scale, rep
        return out.transpose(1, 2).reshape(B, T, H * D)

    @staticmethod
    def backward(ctx, da):
        q, k, v, out, lse = ctx.saved_tensors
        B, H, T, D = q.shape
        dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            da.view(B, T, H, D).transpose(1, 2), q, k, v, out, lse, 0.0, True, scale=ctx.scale)
        if ctx.rep > 1:
            dk, dv = dk.unflatten(1, (-1, ctx.rep)).sum(2), dv.unflatten(1, (-1, ctx.rep)).sum(2)
        return dq, dk, dv, None


def trace_logits(model, trace: DecodeTrace, rows: slice) -> torch.Tensor:
    """(b, C, V) logits of the completion tokens of ``trace``'s rows, with the model's parameters in the
    backward graph (values: the decoder's)."""
    m = model.model
    cs, sn = trace.cos[None, None], trace.signed_sin[None, None]  # (1, 1, T, D)
    x = F.embedding(trace.ids[rows], m.embed_tokens.weight, m.embed_tokens.padding_idx)  # (b, T, hidden)
    for i, layer in enumerate(m.layers):
        a, mlp, val = layer.self_attn, layer.mlp, {k: v[rows] for k, v in trace.values[i].items()}
        q, k, v = _QKV.apply(_rms(x, layer.input_layernorm), val["q"], trace.keys[i, rows], trace.vals[i, rows], cs, sn,
                             a.q_proj.weight, a.k_proj.weight, a.v_proj.weight)
        att = _Attention.apply(q, k, v, trace.scale)  # (b, T, H·D)
        x = x + _Linear.apply(att, val["o"], a.o_proj.weight)
        g, u = _Linear.apply(_rms(x, layer.post_attention_layernorm), val["gate_up"], mlp.gate_proj.weight,
                             mlp.up_proj.weight).chunk(2, -1)
        x = x + _Linear.apply(F.silu(g) * u, val["down"], mlp.down_proj.weight)
    C = trace.logits.shape[1]
    return _Linear.apply(_rms(x[:, -C:], m.norm), trace.logits[rows], model.lm_head.weight)


def trace_logprobs(model, trace: DecodeTrace, rows: slice, prompt_ids, completion_ids, completion_mask,
                   temperature: float = 1.0, with_entropy: bool = False):
    """:func:`policylab.llm.batching.completion_logprobs` of ``trace``'s rows (the same (b, C) log-probs and
    entropies) from the recorded forward values."""
    logits = trace_logits(model, trace, rows)  # (b, C, V): column s predicts completion token s
    logits = torch.cat([logits, logits.new_zeros(logits.shape[0], 1, logits.shape[2])], 1)  # + an unused last row
    C = completion_ids.shape[1]
    input_ids = torch.cat([prompt_ids, completion_ids], 1)
    full_mask = torch.cat([torch.zeros_like(prompt_ids), completion_mask], 1)
    logp = sequence_logprobs(logits, input_ids, full_mask, temperature=temperature)[:, -C:]  # (b, C)
    if with_entropy:
        return logp, token_entropy(logits[:, :-1], temperature)
    return logp
