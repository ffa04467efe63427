"""LoRA through PEFT (issue 13 item 2): the reference is the base model with adapters disabled (no second
copy of the weights), adapters saved and resumed, `llm merge`, bad target modules, one DPO step = TRL 1.16."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("peft", reason="LoRA needs the optional 'llm' extra (peft)")
from peft import LoraConfig, get_peft_model

from policylab.errors import ConfigError
from policylab.llm import (
    DPOConfig,
    DPOTrainer,
    GRPOConfig,
    GRPOTrainer,
    make_char_tokenizer,
    make_tiny_llama,
)
from policylab.llm.models import merge_lora, resolve_model
from policylab.llm.task import dpo_records, make_addition_problems

torch.set_num_threads(1)
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning")]
TRAIN, _ = make_addition_problems(max_a=9, max_b=9, test_fraction=0.2, seed=0)


def dpo_cfg(tmp_path, **kw):
    base = {"output_dir": str(tmp_path / "run"), "max_steps": 2, "batch_size": 4, "learning_rate": 1e-2,
            "progress": False, "use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}
    return DPOConfig(**{**base, **kw})


def trainable(m):
    return torch.cat([p.detach().flatten() for p in m.parameters() if p.requires_grad])


def test_reference_is_the_base_model_with_adapters_disabled_and_holds_no_tensors(tmp_path):
    tok = make_char_tokenizer()
    base = make_tiny_llama(len(tok))
    frozen = copy.deepcopy(base)
    trainer = DPOTrainer(base, tok, dpo_cfg(tmp_path), dpo_records(TRAIN))
    assert list(trainer.ref_model.parameters()) == []  # zero reference tensors
    n_base = sum(1 for _ in frozen.parameters())
    assert sum(1 for p in trainer.model.parameters() if not p.requires_grad) == n_base  # one copy of the base
    trainer.train()
    batch = trainer.batch([0, 1, 2])
    ref = trainer.sequence_logps(trainer.ref_model, batch)
    torch.testing.assert_close(ref[:2], trainer.sequence_logps(frozen, batch)[:2])  # = the untouched base
    moved = trainer.sequence_logps(trainer.model, batch)[0]
    assert (moved - ref[0]).abs().max().item() > 1e-4  # while the adapted policy moved
    grpo = GRPOTrainer("tiny", tok, GRPOConfig(output_dir=str(tmp_path / "g"), max_steps=1, batch_size=4,
                                               num_generations=4, max_completion_length=3, beta=0.04,
                                               use_peft=True, progress=False, lora_r=4), TRAIN)
    assert list(grpo.ref_model.parameters()) == []
    assert grpo.train()[-1]["kl"] == pytest.approx(0.0, abs=1e-6)  # B = 0 at init: π = π_ref at step 1


def test_adapter_checkpoints_resume_exactly_and_merge(tmp_path):
    tok = make_char_tokenizer()
    straight = DPOTrainer("tiny", tok, dpo_cfg(tmp_path / "a", max_steps=3), dpo_records(TRAIN))
    straight.train()
    first = DPOTrainer("tiny", tok, dpo_cfg(tmp_path / "b", max_steps=2), dpo_records(TRAIN))
    first.train()
    ckpt = tmp_path / "b" / "run" / "checkpoint-2"
    assert (ckpt / "adapter_model.safetensors").is_file() and not (ckpt / "model.safetensors").exists()
    resumed = DPOTrainer("tiny", tok, dpo_cfg(tmp_path / "b", max_steps=3), dpo_records(TRAIN))
    resumed.train(resume_from="latest")
    assert torch.equal(trainable(resumed.model), trainable(straight.model))

    merged, _ = resolve_model(merge_lora(tmp_path / "b" / "run", tmp_path / "merged"))
    assert not hasattr(merged, "disable_adapter")
    ids = torch.tensor([tok("3+4=7")["input_ids"]])
    torch.testing.assert_close(merged(ids).logits, resumed.model(ids).logits, rtol=1e-5, atol=1e-5)


def test_lora_errors(tmp_path):
    tok = make_char_tokenizer()
    with pytest.raises(ConfigError, match="lora_target_modules=\\['nope'\\]"):
        DPOTrainer("tiny", tok, dpo_cfg(tmp_path, lora_target_modules=["nope"]), dpo_records(TRAIN))
    with pytest.raises(ConfigError, match="lora_r"):
        dpo_cfg(tmp_path, lora_r=0)
    with pytest.raises(ConfigError, match="lora_dropout"):
        dpo_cfg(tmp_path, lora_dropout=1.0)


def test_lora_dpo_one_step_matches_trl(tmp_path):
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from test_llm_parity_trainers import DPO_ROWS, LR, _trl_args

    tok = make_char_tokenizer()
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    base = make_tiny_llama(len(tok))
    trl_trainer = trl.DPOTrainer(  # TRL wraps the base with peft_config; its reference = adapters disabled
        model=copy.deepcopy(base), peft_config=lora, processing_class=tok,
        train_dataset=datasets.Dataset.from_list(DPO_ROWS),
        args=trl.DPOConfig(**_trl_args(tmp_path / "trl"), per_device_train_batch_size=8, max_steps=1, beta=0.1,
                           max_grad_norm=0.0),
    )
    trl_model = trl_trainer.model
    ours_model = same_adapters(base, lora, trl_model)
    ours_grads, trl_grads = _capture_grads(ours_model), _capture_grads(trl_model)
    trl_trainer.train()
    cfg = DPOConfig(output_dir=str(tmp_path / "ours"), max_steps=1, batch_size=8, learning_rate=LR, beta=0.1,
                    max_grad_norm=0.0, progress=False, use_peft=True)
    history = DPOTrainer(ours_model, tok, cfg, DPO_ROWS).train()
    assert history[0]["loss"] == pytest.approx(trl_trainer.state.log_history[0]["loss"], abs=1e-4)
    assert history[0]["rewards/margins"] != 0.0
    compare_adapters(ours_model, ours_grads, trl_model, trl_grads)


def same_adapters(base, lora, trl_model):
    """policylab's PEFT copy of ``base`` with TRL's adapters, whose B is first set to seeded nonzero values
    (B = 0 at init would make the policy equal the reference)."""
    ours = get_peft_model(copy.deepcopy(base), lora)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        trl_params = dict(trl_model.named_parameters())
        for name, p in ours.named_parameters():
            if "lora_B" in name:
                trl_params[name].copy_(0.1 * torch.randn(p.shape, generator=g))
            if "lora_" in name:
                p.copy_(trl_params[name])
    return ours


def compare_adapters(ours_model, ours_grads, trl_model, trl_grads):
    """Adapter gradients to 1e-4 of each tensor's largest |g|; every parameter after the step to PARAM_RTOL × lr
    of TRL's, once each side's first AdamW step −lr·g/(|g| + ε) on its own gradient is accounted for
    (an element with |g| ≈ ε = 1e-8 turns a float-rounding difference of g into a large one of that step)."""
    from test_llm_parity_trainers import LR, PARAM_RTOL

    def adam_first_step(g):
        return -LR * g / (g.abs() + 1e-8)

    assert set(ours_grads) == set(trl_grads) and len(ours_grads) == 8  # A and B of q, v in 2 layers
    trl_params = dict(trl_model.named_parameters())
    for name, p in ours_model.named_parameters():
        expected = 0.0
        if name in trl_grads:
            scale = trl_grads[name].abs().max().item()
            assert scale > 0 and (ours_grads[name] - trl_grads[name]).abs().max().item() <= 1e-4 * scale, name
            expected = adam_first_step(ours_grads[name]) - adam_first_step(trl_grads[name])
        diff = p.detach() - trl_params[name].detach()
        assert (diff - expected).abs().max().item() <= PARAM_RTOL * LR, name


def _capture_grads(model) -> dict[str, torch.Tensor]:
    grads: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(lambda p, name=name: grads.__setitem__(name, p.grad.detach().clone()))
    return grads


def test_cli_lora_run_and_merge(tmp_path, capsys):
    from policylab.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text("".join(__import__("json").dumps(r) + "\n" for r in dpo_records(TRAIN)[:16]))
    run = tmp_path / "run"
    assert main(["llm", "dpo", "--model", "tiny", "--train_file", str(data), "--output_dir", str(run), "--max_steps",
                 "1", "--batch_size", "4", "--use_peft", "true", "--lora_r", "4", "--lora_target_modules",
                 "q_proj,v_proj", "--progress", "false"]) == 0
    assert main(["llm", "merge", str(run), "--out", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["llm", "merge", str(tmp_path / "merged"), "--out", str(tmp_path / "m2")]) == 2
    assert "no LoRA adapters" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore:You are using 'rollout_func':UserWarning")
def test_lora_grpo_one_step_matches_trl(tmp_path, monkeypatch):
    """Same fixed completions and rewards as the full-model GRPO parity test (its harness), LoRA on q/v with
    nonzero B so π ≠ π_ref, β = 0.04: TRL's reference is the base with adapters disabled, as ours."""
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from test_llm_parity_trainers import (
        GRPO_PROMPTS,
        LR,
        MAX_NEW,
        _FixedCompletions,
        _reward,
        _trl_args,
    )

    import policylab.llm.grpo as pl_grpo

    tok = make_char_tokenizer()
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    base = make_tiny_llama(len(tok))
    trl_trainer = trl.GRPOTrainer(
        model=copy.deepcopy(base), peft_config=lora, reward_funcs=_reward, processing_class=tok,
        train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in GRPO_PROMPTS]),
        rollout_func=_FixedCompletions(tok).trl_rollout,
        args=trl.GRPOConfig(**_trl_args(tmp_path / "trl"), per_device_train_batch_size=8, num_generations=4,
                            max_completion_length=MAX_NEW, max_steps=1, loss_type="grpo", beta=0.04,
                            scale_rewards="group", epsilon=0.2, max_grad_norm=0.0, use_bias_correction_kl=False,
                            shuffle_dataset=False),
    )
    trl_model = trl_trainer.model
    ours_model = same_adapters(base, lora, trl_model)  # nonzero B: the KL term is live
    ours_grads, trl_grads = _capture_grads(ours_model), _capture_grads(trl_model)
    trl_trainer.train()

    monkeypatch.setattr(pl_grpo, "generate", _FixedCompletions(tok).policylab_generate)
    cfg = GRPOConfig(output_dir=str(tmp_path / "ours"), max_steps=1, batch_size=8, num_generations=4,
                     max_completion_length=MAX_NEW, learning_rate=LR, loss_type="grpo", beta=0.04, scale_rewards="std",
                     clip_eps=0.2, max_grad_norm=0.0, progress=False, use_peft=True)
    trainer = GRPOTrainer(ours_model, tok, cfg, [{"prompt": p} for p in GRPO_PROMPTS], reward_funcs=[_reward])
    assert sum(1 for _ in trainer.ref_model.parameters()) == 0  # no tensors held for the reference
    history = trainer.train()
    trl_log = trl_trainer.state.log_history[0]
    assert history[0]["rewards/mean"] == pytest.approx(trl_log["reward"], abs=1e-6)
    assert history[0]["loss"] == pytest.approx(trl_log["loss"], abs=1e-5)
    assert history[0]["kl"] > 1e-6 and history[0]["kl"] == pytest.approx(trl_log["kl"], rel=1e-3)
    compare_adapters(ours_model, ours_grads, trl_model, trl_grads)


def _adapted(dropout: float, seed: int = 0):
    """A tiny Llama with LoRA on every linear layer and nonzero B (so the adapters change the output)."""
    tok = make_char_tokenizer()
    base = make_tiny_llama(len(tok), seed=seed)
    torch.manual_seed(seed)  # PEFT draws A from the global generator
    model = get_peft_model(base, LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                  "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    return model, tok


def test_fused_lora_layers_compute_pefts_numbers_and_gradients():
    """policylab's fused adapted layer (one addmm) = PEFT's own LoRA forward, outputs and adapter gradients,
    with dropout in training mode (same random mask: the same seed and draw order), and with adapters disabled."""
    from peft.tuners.lora.layer import Linear

    from policylab.llm.lora import FusedLoraLinear, fuse_lora_layers

    ids = torch.randint(3, 90, (3, 12), generator=torch.Generator().manual_seed(0))
    results = {}
    for fused in (False, True):
        model, _ = _adapted(dropout=0.2)
        if fused:
            fuse_lora_layers(model)
        layers = [m for m in model.modules() if isinstance(m, Linear)]
        assert len(layers) == 14 and all((type(m) is FusedLoraLinear) == fused for m in layers)
        model.train()
        torch.manual_seed(1)
        loss = model(input_ids=ids).logits.square().mean()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        assert len(grads) == 28
        with model.disable_adapter(), torch.no_grad():
            base = model(input_ids=ids).logits
        results[fused] = (loss.detach(), grads, base)
    (loss0, g0, b0), (loss1, g1, b1) = results[False], results[True]
    torch.testing.assert_close(loss1, loss0, rtol=1e-6, atol=0)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(b1, b0, rtol=0, atol=0)  # disabled adapters: PEFT's path, the base model


def test_fused_lora_layer_makes_one_output_sized_tensor_where_peft_makes_four():
    """The memory point of the fused layer: per adapted layer, the (N, out) tensors its forward creates."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from policylab.llm.lora import fuse_lora_layers

    class Count(TorchDispatchMode):
        def __init__(self, shape):
            super().__init__()
            self.shape, self.n = shape, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            view = func.is_view or func.__name__.startswith(("view", "_unsafe_view", "t.", "detach"))
            if isinstance(out, torch.Tensor) and out.numel() == self.shape and not view and out._base is None:
                self.n += 1
            return out

    counts = {}
    for fused in (False, True):
        model, _ = _adapted(dropout=0.0)
        if fused:
            fuse_lora_layers(model)
        layer = model.base_model.model.model.layers[0].mlp.up_proj
        x = torch.randn(2, 5, layer.in_features, requires_grad=True)
        with Count(2 * 5 * layer.out_features) as c:
            layer(x)
        counts[fused] = c.n
    assert counts == {False: 4, True: 2}  # PEFT: base, B·A·x, ×α/r, sum; fused: base (mm) and the addmm


def test_lora_training_keeps_no_gradient_or_adam_state_for_frozen_weights(tmp_path):
    """With LoRA only the adapters carry gradients and AdamW moments; the base weights are fp32 and
    shared with the reference (adapters disabled), never copied."""
    tok = make_char_tokenizer()
    base = make_tiny_llama(len(tok))
    storages = {p.data_ptr() for p in base.parameters()}
    trainer = DPOTrainer(base, tok, dpo_cfg(tmp_path, max_steps=1), dpo_records(TRAIN))
    trainer.train()
    frozen = [p for p in trainer.model.parameters() if not p.requires_grad]
    adapters = [p for p in trainer.model.parameters() if p.requires_grad]
    assert {p.data_ptr() for p in frozen} == storages  # the caller's weights themselves, not copies
    assert all(p.grad is None for p in frozen) and all(p.dtype == torch.float32 for p in frozen)
    held = list(trainer.optimizer.state)
    assert len(held) == len(adapters) and {id(p) for p in held} == {id(p) for p in adapters}
    assert sum(p.numel() for p in adapters) < 0.2 * sum(p.numel() for p in frozen)


_MMAP_PROBE = """
import ctypes, json, sys, torch
from policylab.llm import DPOConfig, DPOTrainer
from policylab.llm.task import dpo_records, make_addition_problems

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
train, _ = make_addition_problems(max_a=9, max_b=9, test_fraction=0.2, seed=0)
DPOTrainer("tiny", None, DPOConfig(output_dir=sys.argv[1], max_steps=1, batch_size=2, progress=False, report_to="none",
                                   malloc_mmap_threshold=int(sys.argv[2])), dpo_records(train))
big = torch.ones(4 << 20)  # 16 MB, mapped either way; freeing it raises glibc's adaptive threshold to 16 MB
del big
before = libc.mallinfo2().hblkhd
x = torch.ones(1 << 21)  # 8 MB
print(json.dumps({"mapped_mb": (libc.mallinfo2().hblkhd - before) / 2**20}))
"""


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("threshold", [0, 1 << 20])
def test_malloc_mmap_threshold_maps_large_tensors_on_their_own(tmp_path, threshold):
    """malloc_mmap_threshold (process-wide, so in a fresh process): with it, an 8 MB tensor allocated after a
    16 MB one was freed still gets its own mapping (returned to the OS on free); with glibc's adaptive default
    the threshold has risen to 16 MB and the tensor lands on the heap, whose freed pages stay resident."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _MMAP_PROBE, str(tmp_path / "run"), str(threshold)], env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    mapped = json.loads(out.stdout.strip().splitlines()[-1])["mapped_mb"]
    assert mapped == pytest.approx(8.0, abs=0.1) if threshold else mapped < 0.1


def test_lora_gradient_buffers_are_made_once_and_reused_with_set_to_none_semantics(tmp_path):
    """LoRA's gradient buffers are allocated with the trainer and zeroed between steps (not freed and
    re-made mid-backward); the parameters after 3 steps (2 micro-batches each) equal a run that frees them
    (``set_to_none``), and a trainable parameter that gets no gradient is skipped by AdamW as with
    ``set_to_none`` (weight decay would otherwise move it)."""
    tok = make_char_tokenizer()

    def run(keep: bool):
        torch.manual_seed(0)
        model = get_peft_model(make_tiny_llama(len(tok)), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0))
        model.base_model.model.unused = torch.nn.Parameter(torch.ones(3))  # trainable, never in the forward
        trainer = DPOTrainer(model, tok, dpo_cfg(tmp_path / str(keep), max_steps=3, weight_decay=0.1,
                                                 gradient_accumulation_steps=2), dpo_records(TRAIN))
        adapters = [p for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_" in n]
        buffers = [p.grad.data_ptr() for p in adapters]
        if not keep:
            trainer._kept_grads = False
            for p in adapters:
                p.grad = None
        trainer.train()
        if keep:
            assert [p.grad.data_ptr() for p in adapters] == buffers  # the same buffers after 3 steps
        return trainer

    kept, freed = run(True), run(False)
    torch.testing.assert_close(trainable(kept.model), trainable(freed.model), rtol=1e-6, atol=1e-7)
    unused = kept.model.base_model.model.unused
    assert unused.grad is None and torch.equal(unused.detach(), torch.ones(3))  # AdamW skipped it
    assert unused not in kept.optimizer.state
    lora_b = torch.cat([p.detach().flatten() for n, p in kept.model.named_parameters() if "lora_B" in n])
    assert lora_b.abs().max() > 1e-4  # the adapters trained (B starts at 0)
