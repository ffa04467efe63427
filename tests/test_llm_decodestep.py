"""The lean decoder's compiled one-token step (llm/decodestep.py) against its torch path (``_step_one``): the
same logits, cache and recorded values for varying shapes, grouped-query heads and padded prompts; and the
fallback to the torch path where MKL's packed product cannot be called."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab.deep.fast import blas
from policylab.llm import fastdecode
from policylab.llm.fastdecode import LlamaDecoder
from policylab.llm.tiny import make_tiny_llama

pytestmark = pytest.mark.skipif(not blas.PACKED, reason="this torch has no MKL packed product")


def _decode(model, compiled: bool, ids, mask, steps: int, record: bool):
    """Prefill ``ids`` then ``steps`` one-token steps on fixed tokens; (logits per step, cache, trace)."""
    B, P = ids.shape
    dec = LlamaDecoder(model, B, P + steps + 1, record=record, compiled=compiled)
    assert (dec.compiled is not None) == compiled and dec.plan is not None
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        logits = [dec(ids, pos, mask)]
        for _ in range(steps):
            pos, mask = pos[:, -1:] + 1, torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype)], 1)
            logits.append(dec(torch.randint(3, model.config.vocab_size, (B, 1), generator=gen), pos, mask))
    n = P + steps
    trace = None if dec.trace is None else dec.trace[:, :n].clone()
    return torch.stack(logits), dec.kv[..., :n, :].clone(), trace


@settings(max_examples=12, deadline=None)
@given(heads_kv=st.sampled_from([(4, 4), (4, 2), (4, 1), (2, 2)]), head_dim=st.sampled_from([8, 16]),
       layers=st.integers(1, 3), intermediate=st.integers(8, 40), batch=st.integers(1, 5), prompt=st.integers(1, 6),
       steps=st.integers(1, 6), padded=st.booleans(), record=st.booleans(), seed=st.integers(0, 1000))
def test_compiled_step_equals_torch_step(heads_kv, head_dim, layers, intermediate, batch, prompt, steps, padded,
                                         record, seed):
    heads, kv_heads = heads_kv
    model = make_tiny_llama(50, hidden=heads * head_dim, layers=layers, heads=heads, kv_heads=kv_heads,
                            intermediate=intermediate, seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 50, (batch, prompt), generator=g)
    mask = torch.ones(batch, prompt, dtype=torch.long)
    if padded and prompt > 1:
        mask[0, : prompt - 1] = 0  # row 0 left-padded down to one real token
    torch_logits, torch_kv, torch_trace = _decode(model, False, ids, mask, steps, record)
    logits, kv, trace = _decode(model, True, ids, mask, steps, record)
    torch.testing.assert_close(logits, torch_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kv, torch_kv, atol=1e-5, rtol=1e-5)
    if record:
        torch.testing.assert_close(trace, torch_trace, atol=1e-5, rtol=1e-5)


def test_falls_back_to_the_torch_step_without_mkl_packed_product(monkeypatch):
    """No packed product from numba (another BLAS): the planned torch step serves, with the same logits."""
    model = make_tiny_llama(50, seed=3).eval()
    ids, mask = torch.randint(3, 50, (2, 4)), torch.ones(2, 4, dtype=torch.long)
    want = _decode(model, True, ids, mask, 3, True)
    monkeypatch.setattr(blas, "PACKED", False)
    dec = LlamaDecoder(model, 2, 8)
    assert dec.compiled is None and dec.plan is not None
    got = _decode(model, False, ids, mask, 3, True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    monkeypatch.setattr(fastdecode, "_packed", lambda weight, batch: None)  # no packed weights: the general path
    assert LlamaDecoder(model, 2, 8).compiled is None


def test_float64_model_takes_the_general_torch_path():
    """Not float32 (no folded norms, no MKL packing): neither the compiled nor the planned step; the general
    path's logits still equal the model's own forward."""
    model = make_tiny_llama(50, seed=4).double().eval()
    dec = LlamaDecoder(model, 2, 6)
    assert dec.compiled is None and dec.plan is None
    ids = torch.randint(3, 50, (2, 4))
    with torch.no_grad():
        got = [dec(ids, torch.arange(4).expand(2, 4), None)]
        got.append(dec(ids[:, :1], torch.full((2, 1), 4), None))
        ref = model(input_ids=torch.cat([ids, ids[:, :1]], 1)).logits
    torch.testing.assert_close(got[0], ref[:, -2], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(got[1], ref[:, -1], atol=1e-10, rtol=1e-10)


def test_compiled_setup_holds_no_fused_folded_copies(monkeypatch):
    """Where the compiled step applies, the fused, RMSNorm-folded weights (q|k|v, gate|up, lm head) are made one
    at a time, each packed and dropped before the next is made, and none is kept by the decoder (not after its
    construction, nor after a prompt pass, which makes them again per layer): at 10.7M parameters they were
    ≈ 40 MB held next to the 43 MB packed buffer. The torch step (compiled=False) keeps all 2·layers + 1."""
    import gc
    import weakref

    made = []  # weak references to every folded weight made
    alive_at_make = []  # how many earlier ones were alive when each was made
    fold = fastdecode._folded

    def counted(w, norm):
        gc.collect()
        alive_at_make.append(sum(r() is not None for r in made))
        out = fold(w, norm)
        made.append(weakref.ref(out))
        return out

    def alive():
        gc.collect()
        return sum(r() is not None for r in made)

    monkeypatch.setattr(fastdecode, "_folded", counted)
    model = make_tiny_llama(50, layers=3, seed=5).eval()
    dec = LlamaDecoder(model, 2, 8, record=True)
    assert dec.compiled is not None
    assert len(made) == 2 * 3 + 1 and max(alive_at_make) == 0 and alive() == 0
    with torch.no_grad():
        dec(torch.randint(3, 50, (2, 4)), torch.arange(4).expand(2, 4), None)  # the prompt pass makes them again
    assert len(made) == 2 * (2 * 3 + 1) and alive() == 0
    made.clear()
    torch_step = LlamaDecoder(model, 2, 8, compiled=False)
    assert torch_step.compiled is None and alive() == 2 * 3 + 1


def _thp_eligible(start: int, stop: int) -> list[tuple[int, int, bool]]:
    """(from, to, huge pages allowed) for the mappings of /proc/self/smaps overlapping [start, stop)."""
    import re

    out, current = [], None
    with open("/proc/self/smaps") as f:
        for line in f:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                current = (int(m.group(1), 16), int(m.group(2), 16))
            elif line.startswith("THPeligible:") and current[1] > start and current[0] < stop:
                out.append((*current, line.split()[1] == "1"))
    return out


def test_huge_empty_gives_4k_pages_where_asked():
    """The packed weights' buffer: huge pages, except the 2 MB pages holding ``small`` offsets (MKL's per-weight
    headers), which would otherwise be 2 MB resident each for a few bytes."""
    from pathlib import Path

    setting = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not setting.exists() or "[never]" in setting.read_text():
        pytest.skip("transparent huge pages disabled")
    huge = 2 << 20
    t = fastdecode._huge_empty([3 * huge // 4], torch.float32, small=[huge + 100])  # 3 huge pages, the middle 4 kB
    start = t.data_ptr()
    assert start % huge == 0
    spans = _thp_eligible(start, start + 3 * huge)
    if not any(ok for *_, ok in spans):
        pytest.skip("no THPeligible field in smaps")
    allowed = {page: any(a <= start + page * huge < b and ok for a, b, ok in spans) for page in range(3)}
    assert allowed == {0: True, 1: False, 2: True}


def test_biased_float32_model_takes_the_general_torch_path():
    """Biases (attention_bias, mlp_bias): no folded norms, so neither the compiled nor the planned step (nor
    the per-matrix packing); the general path keeps its own fused copies and its logits equal the model's."""
    from transformers import LlamaForCausalLM

    base = make_tiny_llama(50, seed=6)
    cfg = base.config
    cfg.attention_bias = cfg.mlp_bias = True
    torch.manual_seed(6)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)  # HF initializes them to 0
    dec = LlamaDecoder(model, 2, 6)
    assert dec.compiled is None and dec.plan is None
    assert all(isinstance(layer[1][0], torch.Tensor) and layer[1][1] is not None for layer in dec.layers)
    ids = torch.randint(3, 50, (2, 4))
    with torch.no_grad():
        got = [dec(ids, torch.arange(4).expand(2, 4), None), dec(ids[:, :1], torch.full((2, 1), 4), None)]
        ref = model(input_ids=torch.cat([ids, ids[:, :1]], 1)).logits
    torch.testing.assert_close(got[0], ref[:, -2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], ref[:, -1], atol=1e-5, rtol=1e-5)
