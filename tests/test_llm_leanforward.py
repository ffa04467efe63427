"""The lean shared-prompt forward of a plain Llama (policylab.llm.leanforward) against the Hugging Face
module's two calls (prompt pass, cache tiled, completion pass): logits and gradients, and the fallback
to the module for everything it does not rebuild."""

import pytest
import torch

from policylab.llm import batching
from policylab.llm.batching import _module_shared_prompt_logits, pad, shared_prompt_logprobs
from policylab.llm.leanforward import shared_prompt_logits, supports_lean_forward
from policylab.llm.tiny import make_char_tokenizer, make_tiny_llama

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok():
    return make_char_tokenizer()


def _batch(tok, prompts, completions):
    p_ids, p_mask = pad([tok(x)["input_ids"] for x in prompts], tok.pad_token_id, "left")
    c_ids, c_mask = pad([tok(x, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for x in completions],
                        tok.pad_token_id, "right")
    return p_ids, p_mask, c_ids, c_mask


@pytest.mark.parametrize(("prompts", "completions", "kv_heads"), [
    (("7+8=", "12+30=", "1="), ("15", "42", "1", "9", "441", "23"), None),  # ragged: left pads, n = 2
    (("7+8=", "12+30=", "1="), ("15", "42", "1", "9", "441", "23"), 2),  # grouped-query heads
    (("ab+c=", "x+yz="), ("1", "22", "333", "4", "5", "66"), None),  # no prompt padding (causal kernel), n = 3
])
def test_lean_forward_equals_the_module_forward(tok, prompts, completions, kv_heads):
    """Logits at each prompt's last token and at every real completion token, and the gradients of every
    parameter through them, equal the module's prompt + cached-completion passes to 1e-5 relative."""
    model = make_tiny_llama(len(tok), seed=3, layers=2, kv_heads=kv_heads)
    assert supports_lean_forward(model)
    p_ids, p_mask, c_ids, c_mask = _batch(tok, prompts, completions)
    torch.manual_seed(0)
    w_head, w_tail = torch.randn(len(prompts), 1, len(tok)), torch.randn(*c_ids.shape, len(tok))
    params = list(model.parameters())
    results = []
    for forward in (shared_prompt_logits, _module_shared_prompt_logits):
        args = (model, p_ids, p_mask, c_ids) + ((c_mask,) if forward is _module_shared_prompt_logits else ())
        head, tail = forward(*args)
        loss = (w_head * head).sum() + (w_tail * tail * c_mask[..., None]).sum()  # real completion tokens only
        results.append((head, tail * c_mask[..., None], torch.autograd.grad(loss, params)))
    (head, tail, grads), (head_ref, tail_ref, grads_ref) = results
    torch.testing.assert_close(head, head_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tail, tail_ref, atol=1e-5, rtol=1e-5)
    for g, g_ref in zip(grads, grads_ref):
        assert torch.linalg.vector_norm(g - g_ref) <= 1e-5 * torch.linalg.vector_norm(g_ref) + 1e-8
    assert min(g.abs().max().item() for g in grads_ref) > 1e-4  # every parameter gets a real gradient


def test_lean_forward_under_no_grad_equals_with_grad(tok):
    """The reference pass (no_grad) computes the same values as the policy's."""
    model = make_tiny_llama(len(tok), seed=1)
    batch = _batch(tok, ("7+8=", "1="), ("15", "2", "9", "441"))
    with_grad = shared_prompt_logprobs(model, *batch)
    with torch.no_grad():
        without = shared_prompt_logprobs(model, *batch)
    torch.testing.assert_close(without, with_grad.detach(), atol=0, rtol=0)


def _variants(tok):
    from peft import LoraConfig, get_peft_model

    from policylab.llm.models import AdapterDisabled

    yield "peft", get_peft_model(make_tiny_llama(len(tok), seed=1), LoraConfig(r=4, target_modules=["q_proj"]))
    yield "adapters disabled", AdapterDisabled(
        get_peft_model(make_tiny_llama(len(tok), seed=1), LoraConfig(r=4, target_modules=["q_proj"])))
    yield "bfloat16", make_tiny_llama(len(tok), seed=1).to(torch.bfloat16)
    checkpointed = make_tiny_llama(len(tok), seed=1)
    (getattr(checkpointed, "activation_checkpointing_enable", None) or checkpointed.gradient_checkpointing_enable)()
    yield "gradient checkpointing", checkpointed
    biased = make_tiny_llama(len(tok), seed=1)
    biased.config.attention_bias = True
    yield "attention bias", biased
    dropout = make_tiny_llama(len(tok), seed=1)
    dropout.config.attention_dropout = 0.1
    yield "attention dropout", dropout


def test_autocast_runs_the_module_forward(tok):
    """Under bf16 autocast (mixed_precision "bf16") the float32 Llama runs the module's forward."""
    model = make_tiny_llama(len(tok), seed=1)
    assert supports_lean_forward(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not supports_lean_forward(model)


def test_other_models_run_the_module_forward(tok, monkeypatch):
    """PEFT wrappers, an adapters-disabled reference, non-float32, gradient checkpointing, linear biases
    and attention dropout are not what the lean forward rebuilds: the module runs instead."""
    monkeypatch.setattr(batching, "shared_prompt_logits", lambda *a: pytest.fail("lean forward used"))
    batch = _batch(tok, ("7+8=", "1="), ("15", "2", "9", "441"))
    for name, model in _variants(tok):
        assert not supports_lean_forward(model), name
        if name not in ("attention bias", "attention dropout", "gradient checkpointing"):  # configs edited above
            with torch.no_grad():
                assert shared_prompt_logprobs(model, *batch).shape == batch[2].shape, name
