"""A lean KV-cache decoder for Llama-architecture models (sampling only, no gradients).

Token-by-token decoding of a small model is dominated by per-call overhead (module wrappers, mask
construction, cache objects), not arithmetic; from ~10M parameters, by reading the weights and the
cache (once per token step: at 10.7M parameters, batch 8, that is 43 MB of weights plus up to 38 MB of
keys and values, more than this machine's cache holds). :class:`LlamaDecoder` runs the same
computation as ``LlamaForCausalLM`` — RMSNorm, rotary q/k (the model's own rotary module, so RoPE
scaling variants carry over), grouped-query attention over a preallocated static cache written in
place, SwiGLU MLP — directly on copies of the model's weights made per call: q|k|v and gate|up fused,
RMSNorm weights folded into the matmul that follows (float32), and every weight repacked by MKL for
the B rows of a one-token step (for the compiled step the fused, folded copies are made one at a time,
packed and dropped — never all at once next to the packed buffer; a multi-token prompt pass makes each
again as it reaches it —, and the packed buffer has 4 kB pages where only MKL's per-weight headers sit).
One-token steps run as one compiled call where MKL's packed product can be called from numba
(:mod:`policylab.llm.decodestep`: no per-op dispatch, ≈ 45 % less time per step at 10.7M parameters, batch 8), else a planned torch path (:meth:`LlamaDecoder._step_one`: each layer's
arguments and cache views looked up once, ~40 ops per layer instead of ~60), and the key/value
cache sits in transparent-huge-page memory (:func:`_huge_empty`; read once per step). Its logits equal the Hugging Face forward's up to float rounding
(tested). ``record=True`` also keeps, per layer and position, the rotated queries and the o-projection,
gate|up and down-projection outputs (keys and values are in the cache), from which
:mod:`policylab.llm.replay` takes the training gradients without a second forward.
Other architectures use the generic loop in :func:`policylab.llm.sampling.generate`.
"""

from __future__ import annotations

import math
import mmap

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


def _inv_rms(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """r = 1 / sqrt(mean(x²) + ε) per row, (…, 1), ``eps`` a 0-d tensor: with the norm weight w folded into
    the next matmul, RMSNorm(x) Wᵀ = (w ⊙ x r) Wᵀ = r · (x (W diag w)ᵀ). Three ops (F.rms_norm
    dispatches a dozen on CPU)."""
    n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # ‖x‖
    return torch.addcmul(eps, n, n, value=1.0 / x.shape[-1]).rsqrt_()


def _norm_linear(x: torch.Tensor, norm: torch.Tensor | None, lin: tuple, eps: torch.Tensor,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """RMSNorm(x; norm) Wᵀ + b; ``norm`` None means its weight is folded into ``lin``'s W (and b is None).
    ``out``: where to write the result (a view of the recording buffer)."""
    if norm is None:
        y = _linear(x, lin)
        return y.mul_(_inv_rms(x, eps)) if out is None else torch.mul(y, _inv_rms(x, eps), out=out)
    y = _linear(_rms(x, norm, float(eps)), lin)
    return y if out is None else out.copy_(y)


def _qkv_weights(attn) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight [W_q; W_k; W_v] (and bias): a single matmul yields q, k and v. (Rotated copies of the
    W_q, W_k rows would spare RoPE's rotate_half but add 2/3 to the weights read per token: at batch 8 a
    decode step reads its weights once, so that costs more than the shuffle — 14 % slower at 10.7M.)"""
    w = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
    if attn.q_proj.bias is None:
        return w, None
    return w, torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])


def _rope_(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """RoPE as Hugging Face's apply_rotary_pos_emb, in place: x·cos + rotate_half(x)·sin with
    rotate_half([x₁, x₂]) = [−x₂, x₁], written as x·cos + [x₂, x₁]·[−sin₁, sin₂] (``signed_sin``); the
    halves swapped by one flip (``roll`` dispatches five ops), the result written back into x's memory."""
    swapped = x.unflatten(-1, (2, -1)).flip(-2).flatten(-2)  # [x₂, x₁], a copy
    return torch.addcmul(x * cos, swapped, signed_sin, out=x)


def _gate_up_weights(mlp) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight [W_gate; W_up] (and bias) for the SwiGLU MLP's two input projections."""
    w = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
    return w, None if mlp.gate_proj.bias is None else torch.cat([mlp.gate_proj.bias, mlp.up_proj.bias])


def _packed(weight: torch.Tensor, batch: int) -> torch.Tensor | None:
    """``weight`` (out, in) repacked by MKL for products with ``batch`` rows (``cblas_sgemm_pack``, the
    layout torch.compile's CPU freezing uses), or None when this torch build or dtype has no such path.
    A decode step multiplies B rows by every weight once, so it is bound by reading the weights: the
    packed layout is read about 1.6× faster than ``F.linear``'s at 10.7M parameters, batch 8."""
    if weight.dtype != torch.float32 or weight.device.type != "cpu" or not torch.backends.mkl.is_available():
        return None
    try:
        return torch.ops.mkl._mkl_reorder_linear_weight(weight, batch)
    except (AttributeError, RuntimeError):  # a build without the op
        return None


_HUGE = 2 << 20  # a transparent huge page


def _huge_empty(shape: list, dtype: torch.dtype, small: list = ()) -> torch.Tensor:
    """An uninitialized tensor in anonymous memory marked for transparent huge pages (``MADV_HUGEPAGE``, Linux),
    2 MB-aligned: the cache and the trace are streamed once per token step (tens of MB), and with 4 kB pages
    that walk costs a TLB miss every 4 kB and a page fault per 4 kB when first written. Plain ``torch.empty``
    where the platform has no such advice. ``small``: byte offsets whose 2 MB page gets 4 kB pages instead
    (where only a few bytes are written: a huge page there would be 2 MB resident for them)."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < _HUGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(shape, dtype=dtype)
    region = mmap.mmap(-1, nbytes + _HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    raw = torch.frombuffer(region, dtype=torch.uint8)  # keeps the mapping alive as long as a view of it lives
    start = -raw.data_ptr() % _HUGE
    try:
        region.madvise(mmap.MADV_HUGEPAGE)
        for page in sorted({start + offset // _HUGE * _HUGE for offset in small}):
            region.madvise(mmap.MADV_NOHUGEPAGE, page, min(_HUGE, len(region) - page))
    except OSError:  # THP disabled in this kernel: ordinary pages
        pass
    return raw[start : start + nbytes].view(dtype).view(shape)


def _folded(w: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """W diag(w): the RMSNorm weight w folded into the columns of the matmul that follows it (float32)."""
    return w * norm


def _linear(x: torch.Tensor, lin: tuple) -> torch.Tensor:
    """x Wᵀ + b for ``lin`` = (W, b, packed W or None, rows it was packed for); W may be a function that
    makes it (the compiled step's merged, folded weights: made per use by a prompt pass, not kept)."""
    w, b, packed, rows = lin
    if isinstance(packed, torch.Tensor) and x.numel() == rows * x.shape[-1]:  # (an int: the compiled step's)
        return torch.ops.mkl._mkl_linear(x, packed, w, b, rows)
    return F.linear(x, w() if callable(w) else w, b)


def _compiles(model, batch: int, compiled: bool) -> bool:
    """Whether the compiled one-token step applies: float32 weights, no biases (so every RMSNorm folds), and
    MKL's packed product callable from numba."""
    if not compiled:
        return False
    linears = [model.lm_head] + [lin for layer in model.model.layers for lin in (
        layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
        layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj)]
    if any(lin.bias is not None or lin.weight.dtype != torch.float32 for lin in linears):
        return False
    from policylab.deep.fast import blas

    return blas.PACKED and _packed(linears[0].weight.new_ones(1, 1), batch) is not None


class LlamaDecoder:
    """Prefill + one-token steps over a static (layers, 2, B, kv_heads, max_len, head_dim) cache of keys
    (index 0) and values (index 1)."""

    def __init__(self, model, batch: int, max_len: int, record: bool | dict = False, compiled: bool = True):
        cfg, m = model.config, model.model
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.embed = m.embed_tokens.weight
        dtype = self.embed.dtype
        self.eps = torch.tensor(cfg.rms_norm_eps, dtype=torch.float32)

        def lin(w, b=None):  # (W, b, packed W: set below, rows)
            return (w, b, None, batch)

        lazy = _compiles(model, batch, compiled)

        def normed(norm, merge):  # (norm weight or None, linear): float32 folds w into W's columns
            if lazy:  # a function making W diag(w) on use: packed one matrix at a time, made again per prompt pass
                return None, lin(lambda: _folded(merge()[0], norm))
            w, b = merge()
            if w.dtype != torch.float32 or b is not None:
                return norm, lin(w, b)
            return None, lin(_folded(w, norm))

        # q|k|v and gate|up are fused into one matmul each, RMSNorm weights folded into the matmul that
        # follows, and every weight of a one-token step is repacked for B rows below (copies made per call,
        # freed after sampling: at batch 8 a decode step reads each weight once, so that read bounds it). For the
        # compiled step the fused, folded copies are made one at a time while packing and not kept (≈ the model's
        # size less at peak); a multi-token prompt pass makes each again as it reaches it.
        with torch.no_grad():
            self.layers = [
                (*normed(layer.input_layernorm.weight, lambda a=layer.self_attn: _qkv_weights(a)),
                 lin(layer.self_attn.o_proj.weight, layer.self_attn.o_proj.bias),
                 *normed(layer.post_attention_layernorm.weight, lambda p=layer.mlp: _gate_up_weights(p)),
                 lin(layer.mlp.down_proj.weight, layer.mlp.down_proj.bias))
                for layer in m.layers
            ]
            self.head = normed(m.norm.weight, lambda: (model.lm_head.weight, model.lm_head.bias))
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        # keys and values of a layer side by side, so that one copy writes both: they are the last 2·KV·D
        # columns of the q|k|v product, in that order
        spare = record if isinstance(record, dict) else {}  # buffers of a released trace, reused when they fit

        self.buffers = {}

        def empty(name, shape, dim):  # positions are written before they are read: no zero fill
            full = list(shape)
            full[dim] = -(-shape[dim] // 64) * 64  # length rounded up, so that buffers fit other prompt lengths
            old = spare.get(name)
            ok = old is not None and list(old.shape) == full and old.dtype == dtype
            self.buffers[name] = old if ok else (_huge_empty(full, dtype) if name == 'kv' else torch.empty(full, dtype=dtype))
            return self.buffers[name].narrow(dim, 0, shape[dim])

        self.kv = empty("kv", (len(self.layers), 2, batch, KV, max_len, D), 4)
        # the one-token attention's operands, views per layer: (B·KV, max_len, D) keys and values
        self.keys = [kv[0].view(batch * KV, max_len, D) for kv in self.kv]
        self.values = [kv[1].view(batch * KV, max_len, D) for kv in self.kv]
        # additive key bias of one-token steps, one row per (sequence, kv head): 0, or −inf at padding
        self.bias = torch.zeros((batch * KV, 1, max_len), dtype=dtype)
        cos, sin = m.rotary_emb(self.embed[:1], torch.arange(max_len)[None])  # (1, max_len, D)
        half = D // 2
        self.cos, self.sin = cos[0], torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)  # sin signed for _rope_
        self.scale = D**-0.5
        self.length = 0
        # record keeps, per layer and position, the forward values a backward needs (policylab.llm.replay):
        # one (max_len, B, columns) buffer, columns [gate|up | q | o | down] per layer: gate|up is written
        # there by the product's row scaling, the rest by one concatenation per layer and step
        self.trace = None
        if record is not False:
            hidden, self.width = self.embed.shape[1], 2 * m.layers[0].mlp.gate_proj.weight.shape[0]  # gate|up outputs
            self.trace_columns = {"gate_up": self.width, "q": H * D, "o": hidden, "down": hidden}
            self.trace = empty("trace", (len(self.layers), max_len, batch, sum(self.trace_columns.values())), 1)
        # one-token steps: one compiled call on weights MKL packed into one buffer (each lin's packed W: its
        # offset there), else torch's packed products (each lin's packed W: a tensor) in a planned sequence
        self.compiled = self._compiled_plan(model, batch) if lazy else None
        if self.compiled is None:
            self._set_packed(lambda w: _packed(w, batch))
        self.plan = self.compiled if self.compiled is not None else self._one_token_plan(batch)

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Append ``ids`` (B, T) at rotary ``positions`` (B, T); ``key_mask`` (B, length + T) marks real
        tokens (None: no padding). Returns the logits of the last position, (B, V). Call under no_grad."""
        B, T = ids.shape
        start, stop = self.length, self.length + T
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        if key_mask is not None and (T > 1 or not bool(key_mask[:, start].all())):
            pads = key_mask[:, start:stop] == 0  # (B, T)
            self.bias[:, 0, start:stop] = torch.zeros(()).masked_fill(pads, float("-inf")).repeat_interleave(KV, 0)
        if T == 1 and self.plan is not None:
            return self._step_compiled(ids, positions) if self.compiled is not None else self._step_one(ids, positions)
        x = F.embedding(ids, self.embed)  # (B, T, hidden)
        cos = F.embedding(positions, self.cos).unsqueeze(2)  # (B, T, 1, D)
        sin = F.embedding(positions, self.sin).unsqueeze(2)
        mask = None
        if T > 1:
            keys = torch.arange(stop)
            mask = keys[None, :] <= (start + torch.arange(T))[:, None]  # (T, S) causal
            mask = mask[None, None].expand(B, 1, T, stop)
            if key_mask is not None:
                mask = mask & key_mask[:, None, None, :stop].bool()
                mask = mask | (keys[None, :] == (start + torch.arange(T))[:, None])  # pads attend to themselves
        q_end, k_end = H * D, (H + KV) * D
        rec = self.trace
        for i, (ln1, qkv, o, ln2, gate_up, down) in enumerate(self.layers):
            qkv = _norm_linear(x, ln1, qkv, self.eps)  # (B, T, (H + 2·KV)·D) = [q | k | v]
            _rope_(qkv[..., :k_end].unflatten(-1, (H + KV, D)), cos, sin)  # q, k rotated in place
            # keys and values of the new positions, one copy: (B, T, 2, KV, D) → cache (2, B, KV, T, D)
            self.kv[i].narrow(3, start, T).copy_(qkv[..., q_end:].unflatten(-1, (2, KV, D)).permute(2, 0, 3, 1, 4))
            q = qkv[..., :q_end]  # (B, T, H·D)
            if T == 1:
                att = self._attend_one(i, q[:, 0], stop)  # (B, 1, H·D)
            else:
                att = F.scaled_dot_product_attention(
                    q.unflatten(-1, (H, D)).transpose(1, 2), self.kv[i, 0, :, :, :stop], self.kv[i, 1, :, :, :stop],
                    attn_mask=mask, scale=self.scale, enable_gqa=KV != H,
                ).transpose(1, 2).reshape(B, T, H * D)  # (B, T, H·D)
            o_out = _linear(att, o)
            x.add_(o_out)
            # recording: rows start…stop−1 of the (max_len, B, columns) buffer, as (B, T, columns)
            row = None if rec is None else rec[i][start:stop].transpose(0, 1)
            gu = _norm_linear(x, ln2, gate_up, self.eps, out=None if row is None else row[..., : self.width])
            g, u = gu.chunk(2, dim=-1)
            d_out = _linear(F.silu(g).mul_(u), down)
            x.add_(d_out)
            if row is not None:  # gate|up is in place already; q, o and down after it
                torch.cat((q, o_out, d_out), -1, out=row[..., self.width :])
        self.length = stop
        return _norm_linear(x[:, -1], *self.head, self.eps)  # (B, V)

    def _set_packed(self, pack) -> None:
        """Each linear map's packed W ← ``pack(W)`` (None: F.linear serves)."""
        def with_packed(lin):
            return (lin[0], lin[1], pack(lin[0]), lin[3])

        self.layers = [(ln1, with_packed(qkv), with_packed(o), ln2, with_packed(gate_up), with_packed(down))
                       for ln1, qkv, o, ln2, gate_up, down in self.layers]
        self.head = (self.head[0], with_packed(self.head[1]))

    def _one_token_plan(self, batch: int) -> list | None:
        """Per layer, what a one-token step reads, looked up once: the packed products' arguments and the
        cache and trace views it slices per step. None (the general path serves) unless every RMSNorm is
        folded and every product packed and without bias."""
        lins = [lin for ln1, qkv, o, ln2, gate_up, down in self.layers for lin in (qkv, o, gate_up, down)]
        if any(layer[0] is not None or layer[3] is not None for layer in self.layers) or any(
                lin[1] is not None or lin[2] is None for lin in lins):
            return None
        self.mkl_linear = torch.ops.mkl._mkl_linear.default
        plan = []
        for i, (_, qkv, o, _, gate_up, down) in enumerate(self.layers):
            args = tuple((packed, w, None, rows) for w, _, packed, rows in (qkv, o, gate_up, down))
            plan.append((*args,
                         self.kv[i].permute(3, 1, 0, 2, 4),  # (max_len, B, 2, KV, D): position-major
                         self.keys[i].transpose(1, 2),  # (B·KV, D, max_len)
                         self.values[i],  # (B·KV, max_len, D)
                         *((None, None) if self.trace is None else  # (max_len, B, ·): gate|up, [q | o | down]
                           self.trace[i].split((self.width, self.trace[i].shape[-1] - self.width), -1))))
        return plan

    def _step_one(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``__call__`` for one new token per row (T = 1) with every norm folded and every product packed: the
        same computation on 2-d (B, ·) rows, with each layer's views and arguments looked up once
        (:meth:`_one_token_plan`), fewer ops per layer (a decode step at 10.7M parameters runs ~50 per
        layer, a few µs each)."""
        start = self.length
        stop = start + 1
        B, H, KV, D = ids.shape[0], self.n_heads, self.n_kv, self.head_dim
        q_end, k_end, eps, inv_h = H * D, (H + KV) * D, self.eps, 1.0 / self.embed.shape[1]
        mkl, scale = self.mkl_linear, self.scale
        x = F.embedding(ids.view(B), self.embed)  # (B, hidden)
        pos = positions.view(B)
        cos = F.embedding(pos, self.cos).view(B, 1, 2, D // 2)  # (B, 1, 2, D/2): the halves of each head
        sin = F.embedding(pos, self.sin).view(B, 1, 2, D // 2)
        bias = self.bias.narrow(2, 0, stop)  # (B·KV, 1, stop)
        for (qkv_w, o_w, gu_w, down_w, kv_t, keys_t, values, rec_gu, rec_rest) in self.plan:
            n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
            qkv = mkl(x, *qkv_w).mul_(torch.addcmul(eps, n, n, value=inv_h).rsqrt_())  # (B, (H + 2·KV)·D)
            qk = qkv[:, :k_end].view(B, H + KV, 2, D // 2)  # q and k heads, their halves
            torch.addcmul(qk * cos, qk.flip(2), sin, out=qk)  # RoPE in place, as _rope_ ([x₂, x₁] by the flip)
            kv_t.select(0, start).copy_(qkv[:, q_end:].view(B, 2, KV, D))  # keys and values into the cache
            q = qkv[:, :q_end]  # (B, H·D)
            scores = torch.baddbmm(bias, q.reshape(B * KV, -1, D), keys_t.narrow(2, 0, stop), alpha=scale)
            att = torch.bmm(torch.softmax(scores, -1), values.narrow(1, 0, stop)).view(B, q_end)  # (B, H·D)
            o_out = mkl(att, *o_w)
            x.add_(o_out)
            n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
            r = torch.addcmul(eps, n, n, value=inv_h).rsqrt_()
            if rec_gu is None:
                gu = mkl(x, *gu_w).mul_(r)
            else:  # into the trace row of this position
                gu = torch.mul(mkl(x, *gu_w), r, out=rec_gu.select(0, start))  # (B, 2·I)
            g, u = gu.chunk(2, dim=-1)
            d_out = mkl(F.silu(g).mul_(u), *down_w)
            x.add_(d_out)
            if rec_rest is not None:
                torch.cat((q, o_out, d_out), -1, out=rec_rest.select(0, start))
        self.length = stop
        return _norm_linear(x, *self.head, self.eps)  # (B, V)

    def _compiled_plan(self, model, batch: int) -> dict:
        """The arguments of :func:`policylab.llm.decodestep.decode_step` (numpy views of the weights, cache,
        trace and scratch rows; the weights packed by MKL into one buffer, each lin's packed W its offset there),
        where it applies (:func:`_compiles`). The fused, folded weights are made one at a time, each packed and
        dropped. The buffer is a fresh mapping per decoder, unmapped with it (not kept with the trace's buffers
        for the next rollout: that would hold its 62 MB at 10.7M parameters through the update as well)."""
        import numpy as np

        from policylab.deep.fast import blas
        from policylab.llm.decodestep import decode_step

        lins = [lin for _, qkv, o, _, gate_up, down in self.layers for lin in (qkv, o, gate_up, down)] + [self.head[1]]

        def empty(n):  # the packed weights are read once per step: in huge pages (a TLB miss per 2 MB, not 4 kB),
            # but for the 2 MB pages where a weight's slot starts: MKL writes a header of a few bytes there and the
            # packed data from a later 2 MB boundary, so a huge page there held 2 MB per weight for its header
            # (25 weights at 10.7M parameters: 112 MB resident for 41 MB of weights; with these 4 kB: 62 MB)
            return _huge_empty([n], torch.float32, small=[4 * int(o) for o in starts]).numpy()

        # rows of the fused, folded weights in ``lins`` order (q|k|v, gate|up per layer, then the head): known
        # from the modules, so that none is made before it is packed
        fused_rows = iter([n for layer in model.model.layers for n in (
            sum(p.out_features for p in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj)),
            2 * layer.mlp.gate_proj.out_features)] + [model.lm_head.out_features])

        def weight(w):  # a parameter as is (o, down), or ((n, k), make) for a fused, folded one
            return ((next(fused_rows), self.embed.shape[1]), lambda: w().numpy()) if callable(w) else w.detach().numpy()

        weights = [weight(lin[0]) for lin in lins]
        starts = blas.pack_offsets([w[0] if isinstance(w, tuple) else w.shape for w in weights], batch)[:-1]
        with torch.no_grad():
            packed, offsets = blas.pack_weights(weights, batch, empty)
        position = iter(offsets.tolist())
        self._set_packed(lambda w: next(position))
        H, KV, D = self.n_heads, self.n_kv, self.head_dim
        hidden, width = self.embed.shape[1], 2 * model.model.layers[0].mlp.gate_proj.weight.shape[0]

        def rows(n):
            return np.empty((batch, n), np.float32)

        return {
            "step": decode_step,
            "args": (self.embed.detach().numpy(), self.cos.numpy(), self.sin.numpy(), packed,
                     offsets[:-1].reshape(len(self.layers), 4), offsets[-1],
                     self.buffers["kv"].numpy(), self.bias.numpy(),
                     self.buffers["trace"].numpy() if self.trace is not None else np.empty((1, 1, 1, 1), np.float32),
                     self.trace is not None, H, np.float32(float(self.eps)), np.float32(self.scale), rows(hidden),
                     np.empty(batch, np.float32), rows((H + 2 * KV) * D), rows(H * D), rows(width), rows(width // 2),
                     rows(hidden), np.empty(self.bias.shape[-1], np.float32)),
            "vocab": model.lm_head.weight.shape[0],
        }

    def _step_compiled(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """:meth:`_step_one` as one compiled call (:func:`policylab.llm.decodestep.decode_step`): the same
        products on the same packed weights, the same cache and trace writes, without per-op dispatch."""
        c = self.compiled
        logits = torch.empty((ids.shape[0], c["vocab"]), dtype=torch.float32)  # (B, V)
        c["step"](ids.reshape(-1).numpy(), positions.reshape(-1).numpy(), self.length, *c["args"], logits.numpy())
        self.length += 1
        return logits

    def _attend_one(self, i: int, q: torch.Tensor, stop: int) -> torch.Tensor:
        """Attention of one new query per row, q (B, H·D), over layer i's cached keys 0…stop−1: two
        batched matmuls per (sequence, kv head), its H/KV query heads as rows (grouped-query heads share
        their keys, as HF's repeat_kv), softmax(q kᵀ/√D + bias) v. Returns (B, 1, H·D)."""
        B, KV = q.shape[0], self.n_kv
        scores = torch.baddbmm(self.bias[:, :, :stop], q.reshape(B * KV, -1, self.head_dim),
                               self.keys[i][:, :stop].transpose(1, 2), alpha=self.scale)  # (B·KV, H/KV, stop)
        return torch.bmm(torch.softmax(scores, -1), self.values[i][:, :stop]).view(B, 1, -1)
