"""A lean autograd forward of a plain Llama over a shared-prompt batch (DPO's policy and reference passes).

:func:`policylab.llm.batching.shared_prompt_logprobs` runs B prompts once and their n·B completions on
top of the prompts' keys and values. Through the Hugging Face module that is two model calls with a
cache in between; here it is one pass over all B·P + n·B·C tokens as one flat (N, hidden) matrix, where
every step but attention is per token:

    x₀ = E[ids];   per layer   h = RMSNorm(x),  q, k = RoPE(h W_qᵀ), RoPE(h W_kᵀ),  v = h W_vᵀ,
                               x ← x + attn(q, k, v) W_oᵀ,   x ← x + (silu(RMSNorm(x) W_gᵀ) ⊙ RMSNorm(x) W_uᵀ) W_dᵀ
    z = RMSNorm(x) W_headᵀ   at each prompt's last token and at every completion token

and only attention knows the structure (:class:`_SharedPromptAttention`): the prompt tokens attend
causally to their prompt, the completion tokens to their prompt's keys and causally to their own.
In the last layer only each prompt's last token goes on besides the completions: the other prompt
tokens' outputs there feed nothing (the completions read only their keys and values), which spares
their queries, attention, o-projection and MLP in that layer. RMSNorm, RoPE and attention are
:class:`torch.autograd.Function` s with hand-written backwards (fewer, larger element-wise passes than
the module's autograd graph of small ops, no slicing backwards that zero-fill); without gradient (the
reference) the residual adds and SwiGLU run in place; the matrix multiplies are the model's own
weights through ``F.linear``. The numbers are the
module's up to float rounding (tested: log-probs and gradients). Plain float32 ``LlamaForCausalLM`` only
(:func:`supports_lean_forward`); anything else — PEFT/LoRA wrappers, other architectures, other dtypes,
biases, attention dropout, gradient checkpointing, RoPE variants that depend on the sequence length —
runs the Hugging Face module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from policylab.llm.fastdecode import supports_fast_decode
from policylab.llm.replay import _rms, supports_replay

__all__ = ["shared_prompt_logits", "supports_lean_forward"]

#: RoPE variants whose angles depend only on the position (not on the sequence length seen by a call)
_ROPE_TYPES = ("default", "linear", "llama3")

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def supports_lean_forward(model) -> bool:
    """True for a plain float32 ``LlamaForCausalLM`` module on the CPU outside autocast (no biases, no
    attention dropout, no gradient checkpointing, position-only RoPE): what :func:`shared_prompt_logits`
    computes."""
    if not (isinstance(model, torch.nn.Module) and supports_fast_decode(model) and supports_replay(model)):
        return False
    checkpointing = ("is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing")
                     else "is_gradient_checkpointing")  # the name changed in transformers 5
    return (not getattr(model, checkpointing, False) and not torch.is_autocast_enabled("cpu")
            and model.lm_head.bias is None and model.lm_head.weight.device.type == "cpu"
            and getattr(model.model.rotary_emb, "rope_type", "default") in _ROPE_TYPES)


class _RoPE(torch.autograd.Function):
    """y = x·cos + rotate_half(x)·sin (Hugging Face's apply_rotary_pos_emb), per half of each head with
    cos = [c, c], sin = [s, s]: y₁ = x₁c − x₂s, y₂ = x₂c + x₁s; its transpose ∂x₁ = ∂y₁c + ∂y₂s,
    ∂x₂ = ∂y₂c − ∂y₁s. Two passes per half into one output, no rotated copy; saves only the angles."""

    @staticmethod
    def forward(ctx, x, c, s):
        ctx.save_for_backward(c, s)
        return _rotate(x, c, s, 1.0)

    @staticmethod
    def backward(ctx, dy):
        c, s = ctx.saved_tensors
        return _rotate(dy, c, s, -1.0), None, None


def _rotate(x: torch.Tensor, c: torch.Tensor, s: torch.Tensor, sign: float) -> torch.Tensor:
    """[x₁c − sign·x₂s, x₂c + sign·x₁s] (sign −1: the inverse rotation, RoPE's transpose)."""
    h = x.shape[-1] // 2
    x1, x2, y = x[..., :h], x[..., h:], torch.empty_like(x)
    torch.mul(x1, c, out=y[..., :h]).addcmul_(x2, s, value=-sign)
    torch.mul(x2, c, out=y[..., h:]).addcmul_(x1, s, value=sign)
    return y


class _SharedPromptAttention(torch.autograd.Function):
    """softmax(q kᵀ/√D + bias) v for the N = B·P + n·B·C tokens of k, v (N, KV, D), rows ordered [the B
    prompts' tokens; the n·B completions' tokens] (completion row j continues prompt j mod B), and queries
    q (M, H, D) of every token (M = N), or of each prompt's last token and every completion token
    (M = B + n·B·C: the last layer, where no other prompt token's output is read): prompt queries over
    their prompt (causal; ``prompt_bias`` (B, 1, P or 1, P) when padded), completion queries over [their
    prompt | their completion] (``completion_bias`` (·, 1, C, P + C)). Two flash-attention kernel calls
    (their output and log-sum-exp are what the backward needs); the prompt's keys and values are tiled for
    the completions inside, their gradients summed back. Returns (M, H·D)."""

    @staticmethod
    def forward(ctx, q, k, v, shape, prompt_bias, completion_bias, scale):
        (qp, kp, vp), (qc, kf, vf) = _split(q, k, v, shape)
        causal = prompt_bias is None and qp.shape[2] > 1
        op, lp = _flash(qp, kp, vp, 0.0, causal, attn_mask=prompt_bias, scale=scale)[:2]
        oc, lc = _flash(qc, kf, vf, 0.0, False, attn_mask=completion_bias, scale=scale)[:2]
        ctx.save_for_backward(q, k, v, op, lp, oc, lc, prompt_bias, completion_bias)
        ctx.shape, ctx.scale, ctx.causal = shape, scale, causal
        H, D = q.shape[1:]  # outputs are (·, T, H, D) in memory: the reshapes are views
        return torch.cat([op.transpose(1, 2).reshape(-1, H * D), oc.transpose(1, 2).reshape(-1, H * D)])

    @staticmethod
    def backward(ctx, da):
        q, k, v, op, lp, oc, lc, prompt_bias, completion_bias = ctx.saved_tensors
        (B, P, n, C), (M, H, D), (N, KV, _) = ctx.shape, q.shape, k.shape
        (qp, kp, vp), (qc, kf, vf) = _split(q, k, v, ctx.shape)
        Mp = M - n * B * C  # prompt queries
        g = da.view(M, H, D)
        gp = g[:Mp].view(B, Mp // B, H, D).transpose(1, 2)
        gc = g[Mp:].view(n * B, C, H, D).transpose(1, 2)
        dqp, dkp, dvp = _flash_backward(gp, qp, kp, vp, op, lp, 0.0, ctx.causal, attn_mask=prompt_bias,
                                        scale=ctx.scale)
        dqc, dkf, dvf = _flash_backward(gc, qc, kf, vf, oc, lc, 0.0, False, attn_mask=completion_bias, scale=ctx.scale)
        dq = torch.cat([dqp.transpose(1, 2).reshape(Mp, H, D), dqc.transpose(1, 2).reshape(M - Mp, H, D)])
        dk, dv = k.new_empty(N, KV, D), v.new_empty(N, KV, D)
        rep = H // KV
        for out, d_self, d_full in ((dk, dkp, dkf), (dv, dvp, dvf)):
            if rep > 1:  # grouped-query heads: sum the copies' gradients back onto their kv head
                d_self, d_full = d_self.unflatten(1, (KV, rep)).sum(2), d_full.unflatten(1, (KV, rep)).sum(2)
            # the prompt's keys: their own queries' gradient plus every completion's that read them
            torch.add(d_self, d_full[:, :, :P].unflatten(0, (n, B)).sum(0),
                      out=out[: B * P].view(B, P, KV, D).transpose(1, 2))
            out[B * P :].view(n * B, C, KV, D).copy_(d_full[:, :, P:].transpose(1, 2))
        return dq, dk, dv, None, None, None, None


def _split(q, k, v, shape):
    """(prompt queries (B, H, P or 1, D), the prompts' keys and values (B, H, P, D)), (completion queries
    (n·B, H, C, D), keys and values [prompt | completion] (n·B, H, P + C, D)); key/value heads repeated
    for grouped-query attention."""
    B, P, n, C = shape
    Mp, H, D = q.shape[0] - n * B * C, q.shape[1], q.shape[2]
    qp = q[:Mp].view(B, Mp // B, H, D).transpose(1, 2)
    qc = q[Mp:].view(n * B, C, H, D).transpose(1, 2)
    kp, vp = (t[: B * P].view(B, P, -1, D).transpose(1, 2) for t in (k, v))
    kf, vf = (_tiled(t, shape) for t in (k, v))
    rep = H // k.shape[1]
    if rep > 1:
        kp, vp, kf, vf = (t.repeat_interleave(rep, 1) for t in (kp, vp, kf, vf))
    return (qp, kp, vp), (qc, kf, vf)


def _tiled(t: torch.Tensor, shape) -> torch.Tensor:
    """Keys (or values) (N, KV, D) → (n·B, KV, P + C, D): row j = [prompt j mod B | completion j], one copy."""
    B, P, n, C = shape
    KV, D = t.shape[1:]
    out = t.new_empty(n, B, P + C, KV, D)
    out[:, :, :P] = t[: B * P].view(1, B, P, KV, D)  # the prompts', broadcast over the n completions
    out[:, :, P:] = t[B * P :].view(n, B, C, KV, D)
    return out.flatten(0, 1).transpose(1, 2)


def _attention_biases(prompt_mask: torch.Tensor, n: int, C: int, dtype) -> tuple:
    """Additive biases (0 or −inf), None where nothing is padded: (B, 1, P, P) for the prompt tokens
    (None: the kernel's causal mask), (B, 1, 1, P) for each prompt's last token alone, and (n·B or 1, 1,
    C, P + C) for the completion tokens. A padding query attends to itself (its output is never used; no
    row without a key)."""
    B, P = prompt_mask.shape
    real = prompt_mask.bool()
    inf = torch.tensor(float("-inf"), dtype=dtype)
    zero = torch.zeros((), dtype=dtype)
    causal_c = torch.ones(C, C, dtype=torch.bool).tril()
    if bool(real.all()):
        allowed_c = torch.cat([torch.ones(C, P, dtype=torch.bool), causal_c], -1)[None, None]  # (1, 1, C, P + C)
        return None, None, zero.where(allowed_c, inf)
    allowed = (torch.ones(P, P, dtype=torch.bool).tril()[None] & real[:, None, :]) | torch.eye(P, dtype=torch.bool)
    keys = real.repeat(n, 1)[:, None, :].expand(n * B, C, P)
    allowed_c = torch.cat([keys, causal_c.expand(n * B, C, C)], -1)[:, None]  # (n·B, 1, C, P + C)
    return zero.where(allowed, inf)[:, None], zero.where(real, inf)[:, None, None], zero.where(allowed_c, inf)


def _last_prompt_rows(t: torch.Tensor, B: int, P: int) -> torch.Tensor:
    """Rows [each prompt's last token; every completion token] of a per-token tensor (N, …)."""
    return torch.cat([t[: B * P].unflatten(0, (B, P))[:, -1], t[B * P :]])


def shared_prompt_logits(model, prompt_ids, prompt_mask, completion_ids):
    """((B, 1, V) logits at each prompt's last token, (n·B, C, V) logits at every completion token) for B
    left-padded prompts (B, P) and n·B completions (n·B, C) [every prompt's first; its second; …]: the
    Hugging Face module's prompt pass (``logits_to_keep=1``) and its completion pass on the prompts' cache,
    up to float rounding, in one pass over the tokens (module docstring). Positions: a prompt's real
    tokens 0, 1, …; its completions continue from its length. Needs :func:`supports_lean_forward`."""
    m, cfg = model.model, model.config
    (B, P), (nB, C) = prompt_ids.shape, completion_ids.shape
    n = nB // B
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    D = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    positions = torch.cat([(prompt_mask.cumsum(1) - 1).clamp(min=0).flatten(),
                           (prompt_mask.sum(1, keepdim=True).repeat(n, 1) + torch.arange(C)).flatten()])  # (N,)
    x = F.embedding(torch.cat([prompt_ids.flatten(), completion_ids.flatten()]), m.embed_tokens.weight,
                    m.embed_tokens.padding_idx)  # (N, hidden)
    # (N, 1, D/2) halves of the angles' cos and sin (Llama's are [c, c] and [s, s] per head)
    cos, sin = (t[0, :, None, : D // 2] for t in m.rotary_emb(x, positions[None]))
    prompt_bias, last_bias, completion_bias = _attention_biases(prompt_mask, n, C, x.dtype)
    shape, scale = (B, P, n, C), m.layers[0].self_attn.scaling if m.layers else D**-0.5
    grad = torch.is_grad_enabled()
    for i, layer in enumerate(m.layers):
        a, mlp = layer.self_attn, layer.mlp
        h = _rms(x, layer.input_layernorm)
        k = _RoPE.apply(F.linear(h, a.k_proj.weight).view(-1, KV, D), cos, sin)  # (N, KV, D)
        v = F.linear(h, a.v_proj.weight).view(-1, KV, D)
        if i == len(m.layers) - 1:  # the last layer: other prompt tokens' outputs feed nothing, only their k, v
            x, h, cos, sin, prompt_bias = (*(_last_prompt_rows(t, B, P) for t in (x, h, cos, sin)),
                                                  last_bias)
        q = _RoPE.apply(F.linear(h, a.q_proj.weight).view(-1, H, D), cos, sin)  # (M, H, D)
        o = F.linear(_SharedPromptAttention.apply(q, k, v, shape, prompt_bias, completion_bias, scale), a.o_proj.weight)
        x = x + o if grad else x.add_(o)  # no gradient (the reference): in place, no fresh pages
        h = _rms(x, layer.post_attention_layernorm)
        g, u = F.linear(h, mlp.gate_proj.weight), F.linear(h, mlp.up_proj.weight)
        d = F.linear(F.silu(g) * u if grad else F.silu(g, inplace=True).mul_(u), mlp.down_proj.weight)
        x = x + d if grad else x.add_(d)
    # each prompt's last token (left padding: column P − 1), then the completion tokens: (B + n·B·C, hidden)
    logits = model.lm_head(_rms(x if m.layers else _last_prompt_rows(x, B, P), m.norm))  # (B + n·B·C, V)
    return logits[:B, None], logits[B:].view(nB, C, -1)
