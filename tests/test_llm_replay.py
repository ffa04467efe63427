"""GRPO's update from the decoder's recorded forward values (policylab.llm.replay) against the model's own
forward: the same log-probs, entropies and gradients (autograd through Hugging Face's Llama)."""

import copy

import pytest
import torch

from policylab.llm.batching import completion_logprobs
from policylab.llm.grpo import GRPOConfig, GRPOTrainer
from policylab.llm.replay import trace_logprobs
from policylab.llm.sampling import generate
from policylab.llm.tiny import make_char_tokenizer, make_tiny_llama

torch.set_num_threads(1)


@pytest.fixture
def tok():
    return make_char_tokenizer()


def _loss_and_grads(model, logp, entropy, mask, weights):
    """A GRPO-like surrogate Σ w_i·logp_{i,t} over completion tokens; its gradients, the masked values."""
    loss = (logp * weights[:, None] * mask).sum() / mask.sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return logp.detach() * mask, entropy * mask, grads


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_replayed_logprobs_and_gradients_equal_the_model_forward(tok, kv_heads):
    model = make_tiny_llama(len(tok), kv_heads=kv_heads, seed=2)
    prompts = [tok("12+34=")["input_ids"]] * 3 + [tok("50+61=")["input_ids"]] * 3  # same length: no padding
    torch.manual_seed(0)
    p_ids, p_mask, c_ids, c_mask, texts, trace = generate(model, tok, prompts, 40, record=True)
    torch.manual_seed(0)
    plain = generate(model, tok, prompts, 40)
    assert torch.equal(plain[2], c_ids) and plain[4] == texts  # recording does not change what is sampled
    assert trace is not None and trace.valid_for(model)
    assert int(c_mask.sum()) < c_mask.numel()  # some rows end at EOS, so pads and unmasked tails are covered
    weights = torch.linspace(-1.0, 1.5, len(prompts))
    model.train()
    sl = slice(1, 5)  # a micro-batch of rows
    ref = _loss_and_grads(model, *completion_logprobs(model, p_ids[sl], p_mask[sl], c_ids[sl], c_mask[sl], 0.7,
                                                      with_entropy=True), c_mask[sl], weights[sl])
    got = _loss_and_grads(model, *trace_logprobs(model, trace, sl, p_ids[sl], c_ids[sl], c_mask[sl], 0.7,
                                                 with_entropy=True), c_mask[sl], weights[sl])
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], ref[1], atol=1e-5, rtol=1e-5)
    for name, g in ref[2].items():
        scale = g.abs().max().item()
        assert scale > 0 or name == "model.embed_tokens.weight"
        err = (got[2][name] - g).abs().max().item()
        assert err <= 1e-4 * max(scale, 1e-8), f"{name}: {err:.3g} vs max |g| {scale:.3g}"


def test_no_trace_for_padded_prompts_above_the_size_cap_or_after_the_weights_move(tok, monkeypatch):
    from policylab.llm import sampling
    from policylab.llm.replay import trace_bytes

    model = make_tiny_llama(len(tok), seed=1)
    ragged = [tok("1+2=")["input_ids"], tok("10+20=")["input_ids"]]
    assert generate(model, tok, ragged, 5, record=True)[5] is None  # positions would differ from training's
    assert len(generate(model, tok, ragged, 5)) == 5
    same = [tok("1+2=")["input_ids"]] * 2
    trace = generate(model, tok, same, 5, record=True)[5]
    assert trace.valid_for(model)
    n = len(same[0]) + 5  # positions; the buffers hold 64 (lengths are rounded up to reuse them)
    size = trace_bytes(model, 2, n)
    assert size == sum(b.numel() * 4 for b in trace.buffers.values()) * n // 64 + 4 * 2 * n * len(tok)  # + logits
    monkeypatch.setattr(sampling, "MAX_TRACE_BYTES", size - 1)
    assert generate(model, tok, same, 5, record=True)[5] is None
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    assert not trace.valid_for(model)
    buffers = trace.release()
    assert set(buffers) == {"kv", "trace"} and trace.versions is None


def _capture_grads(model) -> dict:
    grads = {}
    for name, p in model.named_parameters():
        p.register_post_accumulate_grad_hook(lambda p, name=name: grads.__setitem__(name, p.grad.detach().clone()))
    return grads


def test_grpo_update_from_the_trace_equals_the_update_with_a_forward(tmp_path, tok):
    """One GRPO step (rollout + update) with the recorded values and the same rollout updated through the
    model's forward: the same loss and gradients, and weights after AdamW within 0.1·lr (its first step
    moves a weight by lr·g/(|g| + ε), so where |g| ≈ ε = 1e-8 rounding in g shows; a sign error would
    be 2·lr); the next rollout reuses the released buffers."""
    rows = [{"prompt": "12+34=", "answer": "46"}, {"prompt": "50+17=", "answer": "67"}]
    lr = 1e-4
    cfg = GRPOConfig(output_dir=str(tmp_path / "g"), batch_size=8, num_generations=4, max_completion_length=12,
                     learning_rate=lr, progress=False, seed=0)
    a = GRPOTrainer(make_tiny_llama(len(tok), seed=4), tok, cfg, rows, reward_funcs=[lambda completions, **_: [
        float(len(c)) for c in completions]])
    b = copy.deepcopy(a)
    ga, gb = _capture_grads(a.model), _capture_grads(b.model)
    ro = a.rollout([0, 1])
    assert ro.trace is not None
    ro_b = copy.copy(ro)
    ro_b.trace = None
    sa, sb = a.update(ro), b.update(ro_b)
    assert sa["loss"] == pytest.approx(sb["loss"], rel=1e-5, abs=1e-7)
    assert set(ga) == set(gb) and len(ga) == len(list(a.model.parameters()))
    for name, g in gb.items():
        scale = g.abs().max().item()
        assert (ga[name] - g).abs().max().item() <= 1e-4 * max(scale, 1e-12), name
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        assert (p - q).abs().max().item() <= 0.1 * lr, name
    assert a._spare_trace is not None and not ro.trace.valid_for(a.model)
    kv = a._spare_trace["kv"]
    assert a.rollout([0, 1]).trace.buffers["kv"] is kv  # written over, not allocated again
