"""One-optimizer-step parity of policylab's DPOTrainer / GRPOTrainer with TRL 1.16's trainers.

Both sides start from the same tiny Llama (``make_tiny_llama`` seed 0, deep-copied *before* TRL
patches its copy's ``forward`` with the fused LM head), train on the same batch with AdamW (same lr,
betas, eps, no weight decay, constant schedule, no warmup, same gradient-norm clip), for one
optimizer step in fp32 on the CPU. Compared:

- the raw gradients (captured by ``register_post_accumulate_grad_hook``, i.e. before clipping and
  the optimizer): one Adam step from zero moments moves every weight by ≈ lr·sign(g), so parameter
  equality alone would not catch a wrong loss scale; the gradients do;
- the parameters after the step: max |θ_policylab − θ_TRL| ≤ 0.01·lr (1e-5 at lr = 1e-3: 1 % of
  the step each weight moves). Weights whose gradient is ~1e-9, near Adam's ε = 1e-8, are where
  float32 summation-order noise shows up: measured 2e-6 at lr = 1e-3, 1.5e-5 after μ = 2 steps at
  lr = 3e-2.

GRPO sampling is random and the two sides sample with different code, so the completions are fixed
and fed to both (the fair way to compare the *update*): TRL through its public ``rollout_func``
hook (``prompt_ids``/``completion_ids`` per prompt; rewards, advantages, reference log-probs and the
loss are then TRL's own code), policylab by replacing the sampler ``policylab.llm.grpo.generate``
(module function called by ``GRPOTrainer.rollout``) with one returning the same token ids; scoring,
advantages, reference and update are policylab's. Completions of several lengths, some ending in
EOS and some truncated at ``max_completion_length``, two prompts × G = 4.
"""

from __future__ import annotations

import copy

import pytest
import torch

trl = pytest.importorskip("trl", reason="TRL not installed: trainer parity needs the optional 'bench' extra")
datasets = pytest.importorskip("datasets", reason="datasets not installed (comes with TRL)")

from policylab.llm import make_char_tokenizer, make_tiny_llama

torch.set_num_threads(1)
pytestmark = [  # TRL 1.16 on transformers 5 renames; rollout_func is TRL's "experimental" public hook
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:You are using 'rollout_func':UserWarning"),
]

LR = 1e-3
PARAM_RTOL = 1e-2  # parameters agree to 1 % of the step size lr (1e-5 at lr = 1e-3)


def _trl_args(tmp, **kw):
    """TRL as a plain fp32 CPU loop: TRL 1.16 defaults bf16 autocast and gradient checkpointing on."""
    return dict(
        output_dir=str(tmp), report_to="none", use_cpu=True, bf16=False, gradient_checkpointing=False,
        save_strategy="no", disable_tqdm=True, logging_steps=1, seed=0,
        learning_rate=LR, optim="adamw_torch", weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999,
        adam_epsilon=1e-8, lr_scheduler_type="constant", warmup_steps=0, **kw,
    )


def _capture_grads(model) -> dict[str, torch.Tensor]:
    grads: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        p.register_post_accumulate_grad_hook(lambda p, name=name: grads.__setitem__(name, p.grad.detach().clone()))
    return grads


def _compare(ours_model, ours_grads, trl_model, trl_grads, lr=LR, grad_rtol=1e-4) -> float:
    """Gradients equal to grad_rtol × (largest |g| of the tensor); parameters to PARAM_RTOL × lr."""
    assert set(ours_grads) == set(trl_grads) and len(ours_grads) > 0
    for name in trl_grads:
        g_trl, g_ours = trl_grads[name], ours_grads[name]
        err = (g_ours - g_trl).abs().max().item()
        scale = max(g_trl.abs().max().item(), 1e-12)
        assert err <= grad_rtol * scale, f"gradient of {name}: max diff {err:.3g} vs max |g| {scale:.3g}"
    trl_params = dict(trl_model.named_parameters())
    worst = 0.0
    for name, p in ours_model.named_parameters():
        err = (p.detach() - trl_params[name].detach()).abs().max().item()
        assert err <= PARAM_RTOL * lr, f"{name} differs by {err:.3g} after the step (lr {lr})"
        worst = max(worst, err)
    return worst


@pytest.fixture(scope="module")
def tok():
    return make_char_tokenizer()


# ------------------------------------------------------------------------------------------------
# DPO
# ------------------------------------------------------------------------------------------------

DPO_ROWS = [
    {"prompt": f"{a}+{b}=", "chosen": f"{a + b}", "rejected": f"{a + b + d}"}
    for a, b, d in [(1, 2, 1), (3, 4, -2), (10, 5, 10), (7, 7, 1), (12, 30, -1), (2, 2, 100), (9, 1, 2), (40, 2, -10)]
]


@pytest.mark.parametrize("precompute", [False, True], ids=["ref-model", "precomputed-ref"])
@pytest.mark.parametrize("max_grad_norm", [0.0, 0.05], ids=["no-clip", "clip"])
def test_dpo_one_step_matches_trl(tok, tmp_path, precompute, max_grad_norm):
    from policylab.llm import DPOConfig, DPOTrainer

    m0 = make_tiny_llama(len(tok), seed=0)
    ours_model, trl_model = copy.deepcopy(m0), copy.deepcopy(m0)
    ours_grads, trl_grads = _capture_grads(ours_model), _capture_grads(trl_model)

    trl_trainer = trl.DPOTrainer(
        model=trl_model, ref_model=copy.deepcopy(m0), processing_class=tok,
        train_dataset=datasets.Dataset.from_list(DPO_ROWS),
        args=trl.DPOConfig(**_trl_args(tmp_path / "trl"), per_device_train_batch_size=8, max_steps=1,
                           beta=0.1, max_grad_norm=max_grad_norm),
    )
    trl_trainer.train()

    cfg = DPOConfig(
        output_dir=str(tmp_path / "ours"), max_steps=1, batch_size=8, learning_rate=LR, beta=0.1,
        max_grad_norm=max_grad_norm, precompute_ref_logps=precompute, progress=False,
    )
    history = DPOTrainer(ours_model, tok, cfg, DPO_ROWS).train()

    assert history[0]["loss"] == pytest.approx(trl_trainer.state.log_history[0]["loss"], abs=1e-4)
    if max_grad_norm:  # the clip is really active, and the logged pre-clip norms agree
        assert history[0]["grad_norm"] > 2 * max_grad_norm
        assert history[0]["grad_norm"] == pytest.approx(trl_trainer.state.log_history[0]["grad_norm"], rel=1e-4)
    _compare(ours_model, ours_grads, trl_model, trl_grads)
    # the step did something: weights moved by ~lr
    assert max((p - q).abs().max().item() for p, q in zip(ours_model.parameters(), m0.parameters())) > 0.5 * LR


# ------------------------------------------------------------------------------------------------
# GRPO
# ------------------------------------------------------------------------------------------------

GRPO_PROMPTS = ["3+4=", "12+9="]
MAX_NEW = 6
# 4 completions per prompt; with EOS (id 2) appended where the text is short, truncated otherwise
GRPO_COMPLETIONS = {
    "3+4=": ["7", "8", "7 ok!", "77777777"],
    "12+9=": ["21", "2", "21", "x+y=21..."],
}


def _completion_ids(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return ids + [tok.eos_token_id] if len(ids) < MAX_NEW else ids[:MAX_NEW]


def _reward(prompts, completions, **kwargs):
    """Deterministic, group-varying reward: right answer 1, plus 0.1 per character, capped."""
    answers = {"3+4=": "7", "12+9=": "21"}
    return [float(c.strip() == answers[p]) + 0.1 * min(len(c), 5) for p, c in zip(prompts, completions)]


class _FixedCompletions:
    """Hands out the fixed completions of each prompt in order (both sides see the same multiset)."""

    def __init__(self, tok):
        self.tok = tok
        self.prompt_of = {tuple(tok(p)["input_ids"]): p for p in GRPO_PROMPTS}
        self.next = {p: 0 for p in GRPO_PROMPTS}

    def take(self, prompt: str) -> list[int]:
        i = self.next[prompt]
        self.next[prompt] = (i + 1) % len(GRPO_COMPLETIONS[prompt])
        return _completion_ids(self.tok, GRPO_COMPLETIONS[prompt][i])

    # TRL's rollout_func(prompts, trainer) -> {"prompt_ids", "completion_ids", "logprobs"}
    def trl_rollout(self, prompts, trainer):
        return {
            "prompt_ids": [self.tok(p)["input_ids"] for p in prompts],
            "completion_ids": [self.take(p) for p in prompts],
            "logprobs": None,
        }

    # stands in for policylab.llm.sampling.generate(model, tokenizer, prompt_ids, max_new_tokens, ...)
    def policylab_generate(self, model, tokenizer, prompt_ids, max_new_tokens, *args, **kwargs):
        from policylab.llm.batching import pad

        assert max_new_tokens == MAX_NEW
        completions = [self.take(self.prompt_of[tuple(p)]) for p in prompt_ids]
        p_ids, p_mask = pad(prompt_ids, tokenizer.pad_token_id, "left")
        c_ids, c_mask = pad(completions, tokenizer.pad_token_id, "right")
        texts = tokenizer.batch_decode(c_ids, skip_special_tokens=True)
        return p_ids, p_mask, c_ids, c_mask, texts


GRPO_CASES = [
    # (loss_type, beta, scale_rewards policylab / TRL, num_iterations)
    ("dapo", 0.0, ("std", "group"), 1),  # TRL 1.16 defaults
    ("grpo", 0.04, ("std", "group"), 1),  # DeepSeekMath
    ("dr_grpo", 0.0, ("none", "none"), 1),  # Dr. GRPO
    ("bnpo", 0.04, ("none", "none"), 1),
    ("grpo", 0.04, ("std", "group"), 2),  # μ = 2: second step off-policy, clipped ratios
]


@pytest.mark.parametrize("loss_type,beta,scales,num_iterations", GRPO_CASES)
def test_grpo_one_step_matches_trl(tok, tmp_path, monkeypatch, loss_type, beta, scales, num_iterations):
    import policylab.llm.grpo as pl_grpo
    from policylab.llm import GRPOConfig, GRPOTrainer

    lr = LR if num_iterations == 1 else 3e-2  # μ = 2: a big first step so the second one clips
    m0 = make_tiny_llama(len(tok), seed=0)
    ours_model, trl_model = copy.deepcopy(m0), copy.deepcopy(m0)
    ours_grads, trl_grads = _capture_grads(ours_model), _capture_grads(trl_model)
    if beta:  # TRL builds its reference model from the policy's name_or_path: a local folder
        ref_dir = tmp_path / "ref"
        m0.save_pretrained(ref_dir)
        trl_model.config._name_or_path = str(ref_dir)

    trl_trainer = trl.GRPOTrainer(
        model=trl_model, reward_funcs=_reward, processing_class=tok,
        train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in GRPO_PROMPTS]),
        rollout_func=_FixedCompletions(tok).trl_rollout,
        args=trl.GRPOConfig(
            **{**_trl_args(tmp_path / "trl"), "learning_rate": lr}, per_device_train_batch_size=8,
            num_generations=4, max_completion_length=MAX_NEW, max_steps=num_iterations,
            num_iterations=num_iterations, loss_type=loss_type, beta=beta, scale_rewards=scales[1],
            epsilon=0.2, max_grad_norm=0.0, use_bias_correction_kl=False, shuffle_dataset=False,
        ),
    )
    trl_trainer.train()

    monkeypatch.setattr(pl_grpo, "generate", _FixedCompletions(tok).policylab_generate)
    cfg = GRPOConfig(
        output_dir=str(tmp_path / "ours"), max_steps=1, batch_size=8, num_generations=4,
        max_completion_length=MAX_NEW, learning_rate=lr, loss_type=loss_type, beta=beta,
        scale_rewards=scales[0], clip_eps=0.2, max_grad_norm=0.0, num_iterations=num_iterations,
        progress=False,
    )
    history = GRPOTrainer(ours_model, tok, cfg, [{"prompt": p} for p in GRPO_PROMPTS], reward_funcs=[_reward]).train()

    trl_log = trl_trainer.state.log_history
    assert history[0]["rewards/mean"] == pytest.approx(trl_log[0]["reward"], abs=1e-6)
    assert history[0]["rewards/mean"] > 0 and history[0]["frac_reward_zero_std"] == 0.0
    assert history[0]["loss"] == pytest.approx(trl_log[num_iterations - 1]["loss"], abs=1e-5)
    if num_iterations > 1:  # the second update is off-policy and really clips, in both
        assert history[0]["clip_ratio"] > 0.05
        assert history[0]["clip_ratio"] == pytest.approx(trl_log[1]["clip_ratio/region_mean"], abs=1e-6)
    _compare(ours_model, ours_grads, trl_model, trl_grads, lr=lr)
