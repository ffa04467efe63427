"""LLM trainers on the tiny offline Llama: model/tokenizer, masking through a real model, data
validation errors, smoke runs of SFT/DPO/GRPO, checkpoints and resume, CLI."""

import json
import math

import pytest
import torch

from policylab.errors import DivergenceError
from policylab.llm import sequence_logprobs
from policylab.llm.batching import (
    completion_logprobs,
    join_right_padded,
    pad,
    shared_prompt_logprobs,
)
from policylab.llm.checkpoint import latest_checkpoint
from policylab.llm.dpo import DPOConfig, DPOTrainer
from policylab.llm.grpo import GRPOConfig, GRPOTrainer, Rollout
from policylab.llm.models import resolve_model
from policylab.llm.supervised import SFTConfig, SFTTrainer, sft
from policylab.llm.task import (
    correctness_reward,
    digit_match_reward,
    dpo_records,
    make_addition_problems,
    sft_records,
)
from policylab.llm.tiny import make_char_tokenizer, make_tiny_llama

torch.set_num_threads(1)

TRAIN, TEST = make_addition_problems(max_a=9, max_b=9, test_fraction=0.2, seed=0)


@pytest.fixture
def tok():
    return make_char_tokenizer()


@pytest.fixture
def model(tok):
    return make_tiny_llama(len(tok), seed=0)


def params(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


# ----------------------------------------------------------------------------- tiny model


def test_tiny_model_and_tokenizer_roundtrip(tmp_path, tok, model):
    n = sum(p.numel() for p in model.parameters())
    assert 80_000 < n < 120_000
    ids = tok("12+3=")["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 6
    assert tok.decode(tok("a b\n7", add_special_tokens=False)["input_ids"]) == "a b\n7"
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    m2, t2 = resolve_model(str(tmp_path))
    x = torch.tensor([ids])
    torch.testing.assert_close(m2(x).logits, model(x).logits, rtol=0, atol=0)
    assert t2("12+3=")["input_ids"] == ids and t2.pad_token_id == 0


def test_padding_gets_no_gradient_through_the_model(tok, model):
    """Left-padded prompts, right-padded completions: the pad embeddings get exactly zero gradient,
    and a row's log-probs do not depend on the padding around it."""
    prompts = [tok("7+8=")["input_ids"], tok("1+1=")["input_ids"][1:]]  # lengths 5 and 4
    completions = [tok("15", add_special_tokens=False)["input_ids"] + [2], [tok.convert_tokens_to_ids("2"), 2, 0, 0]]
    p_ids, p_mask = pad(prompts, 0, "left")  # (2, 5)
    c_ids = torch.tensor([completions[0] + [0], completions[1]])  # (2, 4)
    c_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    ids = torch.cat([p_ids, c_ids], 1)
    attention = torch.cat([p_mask, c_mask], 1)
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds, attention_mask=attention).logits
    lp = sequence_logprobs(logits, ids, torch.cat([torch.zeros_like(p_mask), c_mask], 1))
    lp.sum().backward()
    g = embeds.grad.abs().sum(-1)  # (2, 9)
    assert torch.all(g[attention == 0] == 0)  # pads: exactly zero
    assert g[1, 0] == 0 and g[0, 8] == 0 and g[1, 7] == 0 and g[1, 8] == 0
    # row 1 alone, unpadded, gives the same completion log-probs
    batched = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask)
    alone = completion_logprobs(model, p_ids[1:, 1:], p_mask[1:, 1:], c_ids[1:, :2], c_mask[1:, :2])
    torch.testing.assert_close(batched[1, :2], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.all(batched[c_mask == 0] == 0)


@pytest.mark.parametrize("lora", [False, True])
def test_shared_prompt_forward_equals_the_concatenated_forward(tok, lora):
    """Each prompt run once and its two completions on its cached keys/values = the ordinary forward
    of [prompt ⊕ completion] rows right-padded (positions 0, 1, …): log-probs and gradients to 1e-5,
    ragged prompts and completions, also through PEFT adapters."""
    torch.manual_seed(0)
    model = make_tiny_llama(len(tok), seed=1, layers=2)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
        for name, p in model.named_parameters():
            if "lora_B" in name:  # B = 0 at init would leave the adapters' gradients trivial
                torch.nn.init.normal_(p, std=0.1)
    prompts = [tok(x)["input_ids"] for x in ("7+8=", "12+30=", "1=")]
    completions = [tok(x, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                   for x in ("15", "42", "1", "9", "441", "23")]  # [first of each prompt; second of each]
    ids, attention, comp = join_right_padded(prompts * 2, completions, tok.pad_token_id)  # (6, T)
    concat = sequence_logprobs(model(input_ids=ids, attention_mask=attention, use_cache=False).logits, ids, comp)
    concat = concat.sum(-1)  # (6,)
    shared = shared_prompt_logprobs(model, *pad(prompts, tok.pad_token_id, "left"),
                                    *pad(completions, tok.pad_token_id, "right")).sum(-1)  # (6,)
    torch.testing.assert_close(shared, concat, atol=1e-5, rtol=1e-5)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0])
    params = [p for p in model.parameters() if p.requires_grad]
    g_shared = torch.autograd.grad((weights * shared).sum(), params)
    g_concat = torch.autograd.grad((weights * concat).sum(), params)
    for a, b in zip(g_shared, g_concat):
        torch.testing.assert_close(a, b, atol=1e-5 * max(b.abs().max().item(), 1e-3), rtol=1e-5)
    assert max(g.abs().max().item() for g in g_concat) > 1e-3


def test_shared_prompt_logprobs_never_concatenates_the_logits(tok):
    """Forward and backward of :func:`shared_prompt_logprobs` make the tail's (n·B, C, V) logits but no
    (n·B, C + 1, V) tensor (no copy of the logits with the prompt's last one prepended)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    shapes = set()

    class Shapes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            shapes.update(tuple(t.shape) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
            return out

    model = make_tiny_llama(len(tok), seed=1, layers=1)
    prompts, prompt_mask = pad([tok(x)["input_ids"] for x in ("7+8=", "12+30=")], tok.pad_token_id, "left")
    comps, comp_mask = pad([tok(x, add_special_tokens=False)["input_ids"] for x in ("15", "42", "1", "941")],
                           tok.pad_token_id, "right")  # (4, C)
    with Shapes():
        shared_prompt_logprobs(model, prompts, prompt_mask, comps, comp_mask).sum().backward()
    n_rows, C, V = 4, comps.shape[1], model.config.vocab_size
    assert (n_rows, C, V) in shapes and (n_rows, C + 1, V) not in shapes


def test_tile_cache_repeats_keys_and_values_as_reorder_cache_does(tok):
    """The prompt cache tiled for n completions per prompt ([all B; all B; …]) holds what transformers'
    reorder_cache gives for rows [0..B−1] × n; a cache without per-layer tensors gets reorder_cache."""
    import copy

    from transformers import DynamicCache

    from policylab.llm.batching import _tile_cache

    model = make_tiny_llama(len(tok), seed=1, layers=2)
    ids, mask = pad([tok("7+8=")["input_ids"], tok("12+30=")["input_ids"]], tok.pad_token_id, "left")  # (2, P)
    cache = DynamicCache()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, use_cache=True, past_key_values=cache)
    ours, theirs = cache, copy.deepcopy(cache)
    _tile_cache(ours, 2, 3)
    theirs.reorder_cache(torch.tensor([0, 1, 0, 1, 0, 1]))
    for a, b in zip(ours.layers, theirs.layers):
        assert a.keys.shape[0] == 6 and torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)

    class Legacy:  # e.g. transformers 4.46's DynamicCache: key_cache lists, no .layers
        def reorder_cache(self, rows):
            self.rows = rows.tolist()

    legacy = Legacy()
    _tile_cache(legacy, 2, 3)
    assert legacy.rows == [0, 1, 0, 1, 0, 1]


def test_dpo_step_is_the_same_with_the_prompt_shared_or_repeated(tmp_path, tok, monkeypatch):
    """DPOTrainer's loss and gradients with each prompt run once (shared KV cache) = with the prompt run
    with each completion (the path tiny batches and gradient checkpointing take), ragged rows, to 1e-5."""
    from policylab.llm import dpo

    rows = [{"prompt": "7+8=", "chosen": "15", "rejected": "14"}, {"prompt": "12+30=", "chosen": "42", "rejected": "7"},
            {"prompt": "1=", "chosen": "1", "rejected": "11"}]
    out = {}
    for work in (0, math.inf):
        monkeypatch.setattr(dpo, "SHARED_PROMPT_MIN_WORK", work)
        trainer = DPOTrainer(make_tiny_llama(len(tok), seed=3), tok,
                             DPOConfig(output_dir=str(tmp_path / str(work)), batch_size=3, progress=False), rows)
        with torch.no_grad():  # move the policy off the reference so the loss has a gradient beyond ±β/2
            for p in trainer.model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        loss, _, stats = trainer._micro_loss([0, 1, 2])
        loss.backward()
        out[work] = loss.detach(), [p.grad.clone() for p in trainer.model.parameters()], stats["num_tokens"]
    (l0, g0, n0), (l1, g1, n1) = out[0], out[math.inf]
    torch.testing.assert_close(l0, l1, atol=1e-6, rtol=1e-5)
    assert n0 == n1 == sum(2 * len(tok(r["prompt"])["input_ids"]) + len(r["chosen"]) + len(r["rejected"]) + 2
                           for r in rows)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b, atol=1e-5 * max(b.abs().max().item(), 1e-3), rtol=1e-5)


@pytest.mark.parametrize("kv_heads,packed", [(4, True), (2, True), (2, False)])
def test_fast_decoder_matches_hf_forward_and_generate(tok, kv_heads, packed, monkeypatch):
    """The lean Llama decoder gives the model's own logits (prefill and cached steps, left padding,
    grouped-query attention; one-token steps with MKL-packed weights, or plain F.linear where the
    build has none) and the same greedy completions as HF generate."""
    from policylab.llm import fastdecode
    from policylab.llm.fastdecode import LlamaDecoder, supports_fast_decode
    from policylab.llm.sampling import generate

    if not packed:
        monkeypatch.setattr(fastdecode, "_packed", lambda weight, batch: None)
    elif fastdecode._packed(torch.ones(2, 2), 2) is None:
        pytest.skip("this torch build has no MKL-packed linear")
    model = make_tiny_llama(len(tok), kv_heads=kv_heads, seed=1).eval()
    assert supports_fast_decode(model)
    ids, mask = pad([tok("12+34=")["input_ids"], tok("5+6=")["input_ids"]], 0, "left")  # (2, 7)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    dec = LlamaDecoder(model, 2, 10)
    assert all((lin[2] is not None) == packed for layer in dec.layers for lin in (layer[1], layer[2], layer[4], layer[5]))
    assert (dec.plan is not None) == packed  # one-token steps take the planned path (_step_one)
    with torch.no_grad():
        got = [dec(ids, pos, mask)]
        nxt = got[0].argmax(-1, keepdim=True)
        full_mask = torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], 1)
        got.append(dec(nxt, pos[:, -1:] + 1, full_mask))
        ref = model(input_ids=torch.cat([ids, nxt], 1), attention_mask=full_mask).logits
    torch.testing.assert_close(got[0], ref[:, -2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], ref[:, -1], atol=1e-5, rtol=1e-5)
    prompts = [tok("12+34=")["input_ids"]] * 2 + [tok("5+6=")["input_ids"]] * 2
    ours = generate(model, tok, prompts, 10, do_sample=False)
    hf = generate(model, tok, prompts, 10, do_sample=False, use_hf_generate=True)
    assert torch.equal(ours[2], hf[2]) and torch.equal(ours[3], hf[3]) and ours[4] == hf[4]


def test_huge_page_buffer_is_aligned_writable_and_outlives_its_mapping():
    import gc

    from policylab.llm.fastdecode import _huge_empty

    t = _huge_empty([3, 1 << 19], torch.float32)  # 6 MB: in an madvised mapping where Linux offers one
    assert t.shape == (3, 1 << 19) and t.dtype == torch.float32 and t.is_contiguous()
    if hasattr(__import__("mmap"), "MADV_HUGEPAGE"):
        assert t.data_ptr() % (2 << 20) == 0
    gc.collect()
    t.fill_(2.5)
    assert float(t.sum()) == 2.5 * t.numel()
    assert _huge_empty([4, 4], torch.float32).shape == (4, 4)  # small: plain torch.empty


# -------------------------------------------------------------------------------- bad input


def grpo_cfg(tmp_path, **kw):
    base = {"max_steps": 2, "batch_size": 8, "num_generations": 4, "max_completion_length": 3,
            "learning_rate": 1e-3, "output_dir": str(tmp_path / "grpo"), "progress": False, "max_prompt_length": 16}
    return GRPOConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "lines,match",
    [
        ([], "is empty"),
        (['{"prompt": "1+1=", "answer": "2"}', "{oops"], r"data.jsonl:2: invalid JSON"),
        (['{"answer": "2"}'], r"data.jsonl:1: missing field 'prompt'"),
        (['{"prompt": "  ", "answer": "2"}'], r"data.jsonl:1: field 'prompt' is empty"),
        (['{"prompt": 3}'], r"data.jsonl:1: field 'prompt' must be a string"),
        (['{"prompt": "1+1="}'], r"data.jsonl:1: missing column 'answer' needed by reward correctness_reward"),
        (['{"prompt": "1+1=", "answer": "2"}', '{"prompt": "' + "1" * 40 + '", "answer": "2"}'],
         r"data.jsonl:2: prompt is 41 tokens, longer than max_prompt_length=16"),
    ],
)
def test_grpo_bad_jsonl_named_before_training(tmp_path, tok, model, lines, match):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    before = params(model)
    with pytest.raises(ValueError, match=match):
        GRPOTrainer(model, tok, grpo_cfg(tmp_path), str(path))
    assert torch.equal(params(model), before)
    assert not (tmp_path / "grpo").exists()


def test_dpo_sft_bad_rows(tmp_path, tok, model):
    with pytest.raises(ValueError, match=r"record 1: missing field 'rejected'"):
        DPOTrainer(model, tok, DPOConfig(progress=False), [{"prompt": "a", "chosen": "b", "rejected": "c"},
                                                          {"prompt": "a", "chosen": "b"}])
    with pytest.raises(ValueError, match=r"record 0: field 'completion' is empty"):
        SFTTrainer(model, tok, SFTConfig(progress=False), [{"prompt": "a", "completion": ""}])
    with pytest.raises(ValueError, match="training data is empty"):
        SFTTrainer(model, tok, SFTConfig(progress=False), [])
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        SFTTrainer(model, tok, SFTConfig(progress=False, train_file=str(tmp_path / "nope.jsonl")))
    with pytest.raises(ValueError, match="record 0: field 'prompt' is a list of messages .* no chat template"):
        SFTTrainer(model, tok, SFTConfig(progress=False), [{"prompt": [{"role": "user", "content": "hi"}],
                                                           "completion": [{"role": "assistant", "content": "x"}]}])


def test_config_and_tokenizer_errors(tmp_path, tok, model):
    with pytest.raises(ValueError, match=r"num_generations=8 \(group size\) does not divide batch_size=12"):
        GRPOConfig(batch_size=12, num_generations=8)
    with pytest.raises(ValueError, match="loss_type"):
        GRPOConfig(loss_type="nope")
    with pytest.raises(ValueError, match=r"beta=0.0 must be in \(0, inf\)"):
        DPOConfig(beta=0.0)
    tok.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        GRPOTrainer(model, tok, grpo_cfg(tmp_path), TRAIN)
    with pytest.raises(ValueError, match="unknown reward function 'nope'"):
        GRPOTrainer(model, make_char_tokenizer(), grpo_cfg(tmp_path, reward_funcs=["nope"]), TRAIN)


def test_non_finite_reward_names_the_completion(tmp_path, tok, model):
    def bad(prompts, completions, **_):
        return [math.nan if i == 3 else 0.0 for i in range(len(completions))]

    trainer = GRPOTrainer(model, tok, grpo_cfg(tmp_path), TRAIN, reward_funcs=[bad])
    before = params(model)
    with pytest.raises(DivergenceError, match=r"step 1: reward bad returned nan for completion 3 of prompt '.*': rewards must be finite"):
        trainer.train()
    assert torch.equal(params(model), before)


# ------------------------------------------------------------------------------ smoke runs


def test_sft_smoke_lowers_loss(tmp_path, tok, model):
    trainer = sft(model, tok, sft_records(TRAIN), max_steps=30, batch_size=16, learning_rate=3e-3,
                  output_dir=str(tmp_path / "sft"))
    h = trainer.history
    assert h[0]["loss"] > 3.0 and h[-1]["loss"] < 0.6 * h[0]["loss"]
    assert (tmp_path / "sft" / "checkpoint-30" / "model.safetensors").exists()
    assert len((tmp_path / "sft" / "log.jsonl").read_text().splitlines()) == 30


def test_dpo_smoke_and_precompute_equivalence(tmp_path, tok, model):
    import copy

    rows = dpo_records(TRAIN[:16])
    runs = []
    for pre in (False, True):
        m = copy.deepcopy(model)
        cfg = DPOConfig(max_steps=3, batch_size=8, learning_rate=1e-3, beta=0.1, precompute_ref_logps=pre,
                        output_dir=str(tmp_path / f"dpo{pre}"), progress=False)
        trainer = DPOTrainer(m, tok, cfg, rows)
        assert (trainer.ref_model is None) == pre
        runs.append((trainer.train(), params(m)))
    (h0, p0), (h1, p1) = runs
    assert h0[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # π_θ = π_ref at step 0
    assert h0[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert h0[-1]["rewards/margins"] > 0 and h0[-1]["loss"] < math.log(2)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "logps/chosen", "logps/rejected"):
        assert key in h0[-1]
    assert [r["loss"] for r in h0] == pytest.approx([r["loss"] for r in h1], abs=1e-6)
    torch.testing.assert_close(p0, p1, atol=1e-6, rtol=0)
    ipo = DPOTrainer(copy.deepcopy(model), tok, DPOConfig(max_steps=1, batch_size=8, beta=0.1, loss_type="ipo",
                                                          output_dir=str(tmp_path / "ipo"), progress=False), rows)
    assert ipo.train()[0]["loss"] == pytest.approx((1 / (2 * 0.1)) ** 2, rel=1e-6)  # (0 − 1/(2τ))² at π_θ = π_ref


def length_reward(prompts, completions, **_):
    return [float(len(c)) for c in completions]


def test_grpo_smoke_with_kl_and_two_iterations(tmp_path, tok, model):
    cfg = grpo_cfg(tmp_path, beta=0.04, num_iterations=2, max_steps=3)
    trainer = GRPOTrainer(model, tok, cfg, TRAIN, reward_funcs=[correctness_reward, length_reward])
    ref_before = params(trainer.ref_model)
    before = params(model)
    h = trainer.train()
    assert len(h) == 3
    for key in ("loss", "rewards/mean", "rewards/std", "kl", "clip_ratio", "completion_length",
                "rewards/correctness_reward", "rewards/length_reward", "frac_reward_zero_std", "grad_norm", "entropy"):
        assert key in h[-1] and math.isfinite(h[-1][key])
    assert 1 <= h[-1]["completion_length"] <= 3
    assert 0 < h[-1]["entropy"] <= math.log(len(tok))
    assert h[-1]["kl"] > 0  # the policy moved away from the frozen reference
    assert not torch.equal(params(model), before)
    assert torch.equal(params(trainer.ref_model), ref_before)
    assert all(not p.requires_grad for p in trainer.ref_model.parameters())
    assert GRPOTrainer(model, tok, grpo_cfg(tmp_path), TRAIN).ref_model is None  # β = 0: no copy


def test_grpo_reward_weights_and_advantages(tmp_path, tok, model):
    cfg = grpo_cfg(tmp_path, reward_weights=[1.0, 0.5], scale_rewards="none")
    trainer = GRPOTrainer(model, tok, cfg, TRAIN, reward_funcs=[correctness_reward, digit_match_reward])
    recs = [{"prompt": "1+2=", "answer": "3"}] * 4 + [{"prompt": "5+5=", "answer": "10"}] * 4
    completions = ["3", "4", "13", "x", "10", "10", "11", "1"]
    ro = Rollout(torch.zeros(8, 1), torch.ones(8, 1), torch.zeros(8, 2), torch.ones(8, 2))
    trainer.score(ro, recs, completions)
    expected = torch.tensor([1.5, 0.0, 0.25, 0.0, 1.5, 1.5, 0.25, 0.0])  # correct + 0.5·digit match
    torch.testing.assert_close(ro.rewards, expected)
    torch.testing.assert_close(ro.advantages, expected - expected.view(2, 4).mean(1).repeat_interleave(4))
    assert ro.stats["frac_reward_zero_std"] == 0.0


def test_grpo_conversational_prompts_use_chat_template(tmp_path):
    tok = make_char_tokenizer(chat_template=True)
    model = make_tiny_llama(len(tok))
    rows = [{"prompt": [{"role": "user", "content": p["prompt"]}], "answer": p["answer"]} for p in TRAIN[:4]]
    trainer = GRPOTrainer(model, tok, grpo_cfg(tmp_path, max_prompt_length=64, max_steps=1), rows)
    assert tok.decode(trainer.prompt_ids[0]).endswith("\nassistant: ")
    assert len(trainer.train()) == 1


# ------------------------------------------------------------------------- checkpoints, resume


def test_grpo_resume_is_exact(tmp_path, tok):
    straight = GRPOTrainer(make_tiny_llama(len(tok)), tok, grpo_cfg(tmp_path / "a", max_steps=4, beta=0.04), TRAIN)
    h_straight = straight.train()

    first = GRPOTrainer(make_tiny_llama(len(tok)), tok, grpo_cfg(tmp_path / "b", max_steps=2, beta=0.04), TRAIN)
    first.train()
    ckpt = latest_checkpoint(tmp_path / "b" / "grpo")
    assert ckpt.name == "checkpoint-2" and not list((tmp_path / "b" / "grpo").glob(".*tmp"))
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["config"]["beta"] == 0.04

    torch.manual_seed(123)  # a fresh process would have another RNG state: resume must restore it
    resumed = GRPOTrainer(make_tiny_llama(len(tok)), tok, grpo_cfg(tmp_path / "b", max_steps=4, beta=0.04), TRAIN)
    h_resumed = resumed.train(resume_from="latest")
    assert [r["step"] for r in h_resumed] == [3, 4]
    assert h_resumed[-1]["loss"] == h_straight[-1]["loss"]
    assert h_resumed[-1]["kl"] == h_straight[-1]["kl"]  # the reference is the initial model, not the checkpoint
    assert torch.equal(params(resumed.model), params(straight.model))
    assert torch.equal(params(resumed.ref_model), params(straight.ref_model))


def test_save_total_limit_and_run_folder_loading(tmp_path, tok, model):
    cfg = SFTConfig(max_steps=6, save_steps=2, save_total_limit=2, batch_size=4, output_dir=str(tmp_path / "r"),
                    progress=False, learning_rate=1e-3)
    SFTTrainer(model, tok, cfg, sft_records(TRAIN)).train()
    assert sorted(p.name for p in (tmp_path / "r").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    m2, _ = resolve_model(str(tmp_path / "r"))  # a run folder loads its latest checkpoint
    assert torch.equal(params(m2), params(model))


# ------------------------------------------------------------------------------------- CLI


def test_cli_make_data_train_eval_and_errors(tmp_path, capsys):
    from policylab.cli import main
    from policylab.cli.llm import build_config

    data = tmp_path / "data"
    assert main(["llm", "make-data", "--out", str(data), "--max-a", "9"]) == 0
    lines = (data / "grpo.jsonl").read_text().splitlines()
    assert len(lines) == 80 and set(json.loads(lines[0])) == {"prompt", "answer"}
    cfg_file = tmp_path / "sft.yaml"
    cfg_file.write_text(f"model: tiny\ntrain_file: {data / 'sft.jsonl'}\nmax_steps: 3\nlearning_rate: 1.0e-3\n")
    out = tmp_path / "run"
    rc = main(["llm", "sft", "--config", str(cfg_file), "--output-dir", str(out), "--batch_size=4",
               "--progress", "false"])
    assert rc == 0 and (out / "checkpoint-3").is_dir()
    assert main(["llm", "eval", "--model", str(out), "--data", str(data / "test.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 20
    assert main(["llm", "grpo", "--config", str(cfg_file), "--bogus", "1"]) == 2
    assert "unknown config field 'bogus'" in capsys.readouterr().err
    assert main(["llm", "grpo", "--model", "tiny", "--train_file", str(data / "grpo.jsonl"), "--batch_size", "6"]) == 2
    assert "does not divide batch_size=6" in capsys.readouterr().err
    cfg = build_config(GRPOConfig, None, ["--reward-funcs", "correctness,digit_match", "--reward_weights", "[1, 0.5]",
                                          "--clip_eps_high", "none", "--max_steps", "1e2", "--adam_betas", "0.9,0.95"])
    assert cfg.reward_funcs == ["correctness", "digit_match"] and cfg.reward_weights == [1.0, 0.5]
    assert cfg.clip_eps_high is None and cfg.max_steps == 100 and cfg.adam_betas == (0.9, 0.95)


def test_grpo_with_the_lectures_objective_trains(tmp_path, tok, model):
    cfg = grpo_cfg(tmp_path, loss_type="lecture", scale_rewards="none", max_steps=2)
    history = GRPOTrainer(model, tok, cfg, TRAIN, reward_funcs=[digit_match_reward]).train()
    assert len(history) == 2 and all(math.isfinite(h["loss"]) for h in history)
