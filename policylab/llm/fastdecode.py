"""A lean KV-cache decoder for Llama-architecture models (sampling only, no gradients).

Token-by-token decoding of a small model is dominated by per-call overhead (module wrappers, mask
construction, cache objects), not arithmetic; from ~10M parameters, by reading the weights (once
per token step), so the decoder reads each weight once per step and no more. :class:`LlamaDecoder` runs the same computation as
``LlamaForCausalLM`` — RMSNorm, rotary q/k (the model's own rotary module, so RoPE scaling
variants carry over), grouped-query SDPA over a preallocated static cache, SwiGLU MLP — directly
on the model's weight tensors. Its logits equal the Hugging Face forward's up to float rounding
(tested); the log-probs used for training are always recomputed by the model's own forward.
Other architectures use the generic loop in :func:`policylab.llm.sampling.generate`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["LlamaDecoder", "supports_fast_decode"]


def supports_fast_decode(model) -> bool:
    """True for a plain ``LlamaForCausalLM`` (SiLU MLP, no tensor-parallel split, no sliding window)."""
    cfg = model.config
    return (
        type(model).__name__ == "LlamaForCausalLM"
        and getattr(cfg, "hidden_act", None) == "silu"
        and getattr(cfg, "pretraining_tp", 1) == 1
        and getattr(cfg, "sliding_window", None) is None
    )


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm as LlamaRMSNorm: w · x / sqrt(mean(x²) + ε), computed in float32."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)  # one fused op
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _qkv_weights(attn) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight [W_q; W_k; W_v] (and bias): a single matmul yields q, k and v. (Rotated copies of the
    W_q, W_k rows would spare RoPE's rotate_half but add 2/3 to the weights read per token: at batch 8 a
    decode step reads its weights once, so that costs more than the shuffle — 14 % slower at 10.7M.)"""
    w = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
    if attn.q_proj.bias is None:
        return w, None
    return w, torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE as Hugging Face's apply_rotary_pos_emb: x·cos + rotate_half(x)·sin, rotate_half([x₁, x₂]) = [−x₂, x₁]."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def _gate_up_weights(mlp) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight [W_gate; W_up] (and bias) for the SwiGLU MLP's two input projections."""
    w = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
    return w, None if mlp.gate_proj.bias is None else torch.cat([mlp.gate_proj.bias, mlp.up_proj.bias])


class LlamaDecoder:
    """Prefill + one-token steps over a static (layers, B, kv_heads, max_len, head_dim) cache."""

    def __init__(self, model, batch: int, max_len: int):
        cfg, m = model.config, model.model
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.embed = m.embed_tokens.weight
        self.norm = m.norm.weight
        self.lm_head = model.lm_head
        # q|k|v and gate|up are fused into one matmul each (a copy of those weights, made per call:
        # decoding a small model is call-bound; the copy is freed after sampling)
        with torch.no_grad():
            self.layers = [
                (layer.input_layernorm.weight, _qkv_weights(layer.self_attn), layer.self_attn.o_proj,
                 layer.post_attention_layernorm.weight, _gate_up_weights(layer.mlp), layer.mlp.down_proj)
                for layer in m.layers
            ]
        qk = (self.n_heads + self.n_kv) * self.head_dim
        self.splits = (qk, self.n_kv * self.head_dim)
        dtype = self.embed.dtype
        shape = (len(self.layers), batch, self.n_kv, max_len, self.head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)
        cos, sin = m.rotary_emb(self.embed[:1], torch.arange(max_len)[None])  # (1, max_len, D)
        self.cos, self.sin = cos[0], sin[0]
        self.scale = self.head_dim**-0.5
        self.length = 0

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Append ``ids`` (B, T) at rotary ``positions`` (B, T); ``key_mask`` (B, length + T) marks real
        tokens (None: no padding). Returns the logits of the last position, (B, V). Call under no_grad."""
        B, T = ids.shape
        start, stop = self.length, self.length + T
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        x = F.embedding(ids, self.embed)  # (B, T, hidden)
        cos, sin = self.cos[positions].unsqueeze(2), self.sin[positions].unsqueeze(2)  # (B, T, 1, D)
        mask = None
        if T > 1 or key_mask is not None:
            keys = torch.arange(stop)
            mask = keys[None, :] <= (start + torch.arange(T))[:, None]  # (T, S) causal
            mask = mask[None, None].expand(B, 1, T, stop)
            if key_mask is not None:
                mask = mask & key_mask[:, None, None, :stop].bool()
                mask = mask | (keys[None, :] == (start + torch.arange(T))[:, None])  # pads attend to themselves
        for i, (ln1, (w_qkv, b_qkv), o, ln2, (w_gu, b_gu), down) in enumerate(self.layers):
            h = _rms(x, ln1, self.eps)
            qk, v = F.linear(h, w_qkv, b_qkv).split(self.splits, dim=-1)  # (B, T, ·) each
            qk = _rope(qk.view(B, T, H + KV, D), cos, sin)
            qh = qk[:, :, :H].transpose(1, 2)  # (B, H, T, D)
            self.k[i, :, :, start:stop] = qk[:, :, H:].transpose(1, 2)
            self.v[i, :, :, start:stop] = v.view(B, T, KV, D).transpose(1, 2)
            att = F.scaled_dot_product_attention(
                qh, self.k[i, :, :, :stop], self.v[i, :, :, :stop], attn_mask=mask, scale=self.scale,
                enable_gqa=KV != H,
            )  # (B, H, T, D)
            x = x + F.linear(att.transpose(1, 2).reshape(B, T, H * D), o.weight, o.bias)
            h = _rms(x, ln2, self.eps)
            g, u = F.linear(h, w_gu, b_gu).chunk(2, dim=-1)
            x = x + F.linear(F.silu(g) * u, down.weight, down.bias)
        self.length = stop
        return F.linear(_rms(x[:, -1], self.norm, self.eps), self.lm_head.weight, self.lm_head.bias)  # (B, V)
