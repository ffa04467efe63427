"""A lean KV-cache decoder for Llama-architecture models (sampling only, no gradients).

Token-by-token decoding of a small model is dominated by per-call overhead (module wrappers, mask
construction, cache objects), not arithmetic. :class:`LlamaDecoder` runs the same computation as
``LlamaForCausalLM`` — RMSNorm, rotary q/k (the model's own rotary module, so RoPE scaling
variants carry over), grouped-query SDPA over a preallocated static cache, SwiGLU MLP — directly
on the model's weight tensors. Its logits equal the Hugging Face forward's up to float rounding
(tested); the log-probs used for training are always recomputed by the model's own forward.
Other architectures use the generic loop in :func:`policylab.llm.common.generate`.
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


def _cat_linear(*mods) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One (Σ out, in) weight (and bias) for several Linear layers that read the same input."""
    w = torch.cat([m.weight for m in mods], dim=0)
    b = None if mods[0].bias is None else torch.cat([m.bias for m in mods], dim=0)
    return w, b


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin, rotate_half(x) = [−x₂, x₁]."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


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
        # decoding a small model is call-bound; the copy is ~½ of the parameters, freed after sampling)
        self.layers = [
            (layer.input_layernorm.weight,
             _cat_linear(layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj),
             layer.self_attn.o_proj, layer.post_attention_layernorm.weight,
             _cat_linear(layer.mlp.gate_proj, layer.mlp.up_proj), layer.mlp.down_proj)
            for layer in m.layers
        ]
        self.splits = (self.n_heads * self.head_dim, self.n_kv * self.head_dim, self.n_kv * self.head_dim)
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
        cos, sin = self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)  # (B, 1, T, D)
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
            q, k, v = F.linear(h, w_qkv, b_qkv).split(self.splits, dim=-1)  # (B, T, ·) each
            qh = _rope(q.view(B, T, H, D).transpose(1, 2), cos, sin)  # (B, H, T, D)
            self.k[i, :, :, start:stop] = _rope(k.view(B, T, KV, D).transpose(1, 2), cos, sin)
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
