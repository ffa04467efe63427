"""Loss parity with TRL 1.16: policylab's pure GRPO / DPO / IPO losses against TRL's own code.

TRL is not re-implemented here. Each case runs TRL's real ``_compute_loss`` method of a real
``GRPOTrainer`` / ``DPOTrainer`` (built once on a tiny in-memory Llama, no download), with the
model's log-prob computation stubbed out so that TRL sees the very same fixed random tensors as
policylab's function:

- GRPO: ``trainer._get_per_token_logps_and_entropies`` returns our (B, C) ``logp`` leaf tensor;
  ``old_per_token_logps``, ``ref_per_token_logps``, ``advantages``, ``completion_mask`` and
  ``num_items_in_batch`` go in ``inputs`` exactly as ``_generate_and_score_completions`` makes them.
- DPO: the model passed to ``_compute_loss`` is a stub returning our per-token log-probs as the fused
  LM head's ``log_probs`` (zero outside the shifted completion mask, as TRL's head returns them);
  the reference log-probs come in through ``inputs`` (TRL's ``precompute_ref_log_probs`` path).

Both the loss value and its gradient with respect to the per-token log-probs are compared (a
constant factor in a normalization would pass a value-only check at the optimum but not this).
TRL's loss code is dtype-agnostic, so the main cases run in float64 with a 1e-6 tolerance on the
loss (the issue's bar) and 1e-6 relative on gradients; float32 agreement is checked separately.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

trl = pytest.importorskip("trl", reason="TRL not installed: loss parity needs the optional 'bench' extra")
datasets = pytest.importorskip("datasets", reason="datasets not installed (comes with TRL)")
transformers = pytest.importorskip("transformers")

from policylab.llm import make_char_tokenizer, make_tiny_llama, sequence_logprobs
from policylab.losses import dpo_loss, grpo_loss, ipo_loss
from policylab.returns import group_relative_advantages

torch.set_num_threads(1)

# TRL 1.16 sets `gradient_checkpointing`, which transformers 5 renames; the rename warning is noise here.
pytestmark = pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")

TRL_LOSS_TYPES = ["grpo", "bnpo", "dr_grpo", "dapo"]


# ------------------------------------------------------------------------------------------------
# tiny offline model + tokenizer
# ------------------------------------------------------------------------------------------------


def tiny_model_and_tokenizer(seed: int = 0):
    """policylab's offline tiny Llama (2 layers, hidden 64) and character tokenizer: no download."""
    tok = make_char_tokenizer()
    return make_tiny_llama(len(tok), seed=seed), tok


def _trl_common_args(tmp):
    """Training arguments that make TRL a plain fp32 CPU loop (TRL 1.16 defaults bf16 and checkpointing on)."""
    return {
        "output_dir": str(tmp), "report_to": "none", "use_cpu": True, "bf16": False,
        "gradient_checkpointing": False, "max_steps": 1, "save_strategy": "no", "disable_tqdm": True,
        "logging_steps": 1, "seed": 0,
    }


@pytest.fixture(scope="module")
def trl_grpo(tmp_path_factory):
    model, tok = tiny_model_and_tokenizer()
    args = trl.GRPOConfig(
        **_trl_common_args(tmp_path_factory.mktemp("grpo")),
        per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
    )
    ds = datasets.Dataset.from_list([{"prompt": "1+2="}] * 4)
    trainer = trl.GRPOTrainer(
        model=model, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
        args=args, train_dataset=ds, processing_class=tok,
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); one micro-batch per step
    return trainer


@pytest.fixture(scope="module")
def trl_dpo(tmp_path_factory):
    model, tok = tiny_model_and_tokenizer()
    args = trl.DPOConfig(**_trl_common_args(tmp_path_factory.mktemp("dpo")), per_device_train_batch_size=4)
    ds = datasets.Dataset.from_list([{"prompt": "1+2=", "chosen": "3", "rejected": "4"}] * 4)
    trainer = trl.DPOTrainer(
        model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=ds, processing_class=tok
    )
    trainer.model.train()
    trainer.precompute_ref_logps = True  # reference log-probs come from `inputs`
    return trainer


# ------------------------------------------------------------------------------------------------
# running TRL's loss code on given tensors
# ------------------------------------------------------------------------------------------------


def trl_grpo_loss(trainer, logp, old_logp, ref_logp, advantages, mask, *, loss_type, beta,
                  eps_low, eps_high, max_len, bias_correction_kl=False):
    """TRL GRPOTrainer._compute_loss on (B, C) completion log-probs ``logp`` (a leaf with grad)."""
    trainer.loss_type = loss_type
    trainer.beta = beta
    trainer.epsilon_low, trainer.epsilon_high = eps_low, eps_high
    trainer.max_completion_length = max_len
    trainer.args.use_bias_correction_kl = bias_correction_kl
    B, C = logp.shape
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (logp, torch.zeros_like(logp.detach()), None)
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long),
        "prompt_mask": torch.ones(B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(B, C, dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": advantages,
        "num_items_in_batch": mask.sum(),
    }
    if old_logp is not None:
        inputs["old_per_token_logps"] = old_logp
    if beta != 0.0:
        inputs["ref_per_token_logps"] = ref_logp
    for v in trainer._metrics["train"].values():
        v.clear()
    loss = trainer._compute_loss(trainer.model, inputs)
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items() if v}
    return loss, metrics


class _StubFusedLM(torch.nn.Module):
    """Stands in for TRL's fused-LM-head model: returns fixed per-token log-probs (B, T−1)."""

    def __init__(self, per_token_logps):
        super().__init__()
        self.per_token_logps = per_token_logps

    def forward(self, input_ids=None, labels=None, fused_lm_head=False, **kwargs):
        lp = self.per_token_logps
        z = torch.zeros_like(lp.detach())
        return SimpleNamespace(log_probs=lp, entropy=z, mean_logits=z, is_top1=z.bool(), aux_loss=None)


def trl_dpo_loss(trainer, per_token_logps, completion_mask, ref_chosen, ref_rejected, *, beta, loss_type="sigmoid"):
    """TRL DPOTrainer._compute_loss with the batch laid out as TRL's collator does: [chosen; rejected]."""
    trainer.beta = beta
    trainer.loss_types = [loss_type]
    trainer.loss_weights = [1.0]
    n2, T = completion_mask.shape
    inputs = {
        "input_ids": torch.ones(n2, T, dtype=torch.long),
        "attention_mask": torch.ones(n2, T, dtype=torch.long),
        "completion_mask": completion_mask.long(),
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    return trainer._compute_loss(_StubFusedLM(per_token_logps), inputs, return_outputs=False)


# ------------------------------------------------------------------------------------------------
# fixed random tensors
# ------------------------------------------------------------------------------------------------


def grpo_tensors(seed, B=8, C=7, dtype=torch.float64, spread=0.35):
    """Per-token log-probs with ratios spread wide enough that both clip sides are active."""
    g = torch.Generator().manual_seed(seed)
    logp = (-3.0 * torch.rand(B, C, generator=g, dtype=dtype)).requires_grad_()
    old = logp.detach() + spread * torch.randn(B, C, generator=g, dtype=dtype)
    ref = logp.detach() + spread * torch.randn(B, C, generator=g, dtype=dtype)
    rewards = torch.randint(0, 3, (B,), generator=g).to(dtype)
    adv = group_relative_advantages(rewards, group_size=4, scale="std")
    lengths = torch.randint(1, C + 1, (B,), generator=g)
    lengths[0] = C  # at least one full-length completion
    mask = (torch.arange(C)[None, :] < lengths[:, None]).to(dtype)  # right-padded completions
    return logp, old, ref, adv, mask


def _grad(loss, x):
    (g,) = torch.autograd.grad(loss, x)
    return g


# ------------------------------------------------------------------------------------------------
# GRPO
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_type", TRL_LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("seed", [0, 1])
def test_grpo_loss_matches_trl(trl_grpo, loss_type, beta, seed):
    logp, old, ref, adv, mask = grpo_tensors(seed)
    eps_low, eps_high, max_len = 0.2, 0.28, 10  # asymmetric clip (DAPO clip-higher); L_max > padded width
    trl_loss, trl_metrics = trl_grpo_loss(
        trl_grpo, logp, old, ref, adv, mask, loss_type=loss_type, beta=beta,
        eps_low=eps_low, eps_high=eps_high, max_len=max_len,
    )
    ours, stats = grpo_loss(
        logp, old, ref, adv, mask, clip_eps=eps_low, beta=beta, normalization=loss_type,
        clip_eps_high=eps_high, max_len=max_len,
    )
    assert abs(ours.item() - trl_loss.item()) <= 1e-6 * max(1.0, abs(trl_loss.item()))
    torch.testing.assert_close(_grad(ours, logp), _grad(trl_loss, logp), rtol=1e-6, atol=1e-9)
    # the clipped regions are really exercised, on both sides, and counted as TRL counts them
    assert stats["clip_ratio/low"] > 0.05 and stats["clip_ratio/high"] > 0.05
    assert stats["clip_ratio"].item() == pytest.approx(trl_metrics["clip_ratio/region_mean"], abs=1e-6)
    assert stats["clip_ratio/low"].item() == pytest.approx(trl_metrics["clip_ratio/low_mean"], abs=1e-6)
    assert stats["clip_ratio/high"].item() == pytest.approx(trl_metrics["clip_ratio/high_mean"], abs=1e-6)
    if beta:
        assert stats["kl"].item() == pytest.approx(trl_metrics["kl"], rel=1e-6)


@pytest.mark.parametrize("loss_type", TRL_LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_on_policy_matches_trl(trl_grpo, loss_type, beta):
    """num_iterations = 1: TRL passes no old log-probs and uses logp.detach(); policylab: old_logp=None."""
    logp, _, ref, adv, mask = grpo_tensors(3)
    trl_loss, _ = trl_grpo_loss(
        trl_grpo, logp, None, ref, adv, mask, loss_type=loss_type, beta=beta,
        eps_low=0.2, eps_high=0.2, max_len=7,
    )
    ours, _ = grpo_loss(logp, None, ref, adv, mask, clip_eps=0.2, beta=beta, normalization=loss_type, max_len=7)
    assert abs(ours.item() - trl_loss.item()) <= 1e-6 * max(1.0, abs(trl_loss.item()))
    torch.testing.assert_close(_grad(ours, logp), _grad(trl_loss, logp), rtol=1e-6, atol=1e-9)


def test_grpo_loss_matches_trl_float32(trl_grpo):
    logp, old, ref, adv, mask = (t.float() for t in grpo_tensors(5))
    logp = logp.detach().requires_grad_()
    trl_loss, _ = trl_grpo_loss(
        trl_grpo, logp, old, ref, adv, mask, loss_type="grpo", beta=0.04, eps_low=0.2, eps_high=0.2, max_len=7
    )
    ours, _ = grpo_loss(logp, old, ref, adv, mask, clip_eps=0.2, beta=0.04, normalization="grpo")
    assert abs(ours.item() - trl_loss.item()) <= 1e-6
    torch.testing.assert_close(_grad(ours, logp), _grad(trl_loss, logp), rtol=1e-5, atol=1e-7)


def test_grpo_trl_default_kl_bias_correction_differs_in_gradient_only(trl_grpo):
    """TRL 1.16 defaults ``use_bias_correction_kl=True`` (KL term × ρ, DeepSeek-V3.2). On policy ρ ≡ 1,
    so the loss value is the DeepSeekMath k3 one policylab computes, but the gradient gains
    β·k3·∇log π. The parity tests above therefore set it False; this pins down the difference."""
    logp, _, ref, adv, mask = grpo_tensors(4)
    trl_loss, _ = trl_grpo_loss(
        trl_grpo, logp, None, ref, adv, mask, loss_type="bnpo", beta=0.5,
        eps_low=0.2, eps_high=0.2, max_len=7, bias_correction_kl=True,
    )
    ours, _ = grpo_loss(logp, None, ref, adv, mask, clip_eps=0.2, beta=0.5, normalization="bnpo")
    assert ours.item() == pytest.approx(trl_loss.item(), abs=1e-9)
    k3 = torch.exp(ref - logp.detach()) - (ref - logp.detach()) - 1
    expected_extra = 0.5 * k3 * mask / mask.sum()
    torch.testing.assert_close(_grad(trl_loss, logp) - _grad(ours, logp), expected_extra, rtol=1e-6, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# DPO / IPO
# ------------------------------------------------------------------------------------------------


def dpo_tensors(seed, B=6, T=9, dtype=torch.float64, scale=1.0):
    """TRL DPO batch layout: rows [chosen_0..chosen_{B-1}, rejected_0..], prompt then completion."""
    g = torch.Generator().manual_seed(seed)
    prompt_len = torch.randint(1, 4, (B,), generator=g).repeat(2)  # same prompt for both answers
    comp_len = torch.randint(1, 5, (2 * B,), generator=g)
    pos = torch.arange(T)[None, :]
    completion_mask = ((pos >= prompt_len[:, None]) & (pos < (prompt_len + comp_len)[:, None])).to(dtype)
    shift_mask = completion_mask[:, 1:]
    per_token = (-scale * 3.0 * torch.rand(2 * B, T - 1, generator=g, dtype=dtype)) * shift_mask
    per_token = per_token.requires_grad_()
    ref = -scale * 3.0 * comp_len.to(dtype) * torch.rand(2 * B, generator=g, dtype=dtype)
    return per_token, completion_mask, ref[:B], ref[B:]


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_dpo_loss_matches_trl_sigmoid(trl_dpo, beta, seed):
    per_token, cmask, ref_c, ref_r = dpo_tensors(seed, scale=1.0 + 3 * seed)  # seed 1: saturated sigmoids
    trl_loss = trl_dpo_loss(trl_dpo, per_token, cmask, ref_c, ref_r, beta=beta)
    seq = per_token.sum(dim=1)  # (2B,) what TRL sums; zero outside the completion
    B = ref_c.shape[0]
    ours = dpo_loss(seq[:B], seq[B:], ref_c, ref_r, beta=beta)
    assert abs(ours.loss.item() - trl_loss.item()) <= 1e-6
    torch.testing.assert_close(_grad(ours.loss, per_token), _grad(trl_loss, per_token), rtol=1e-6, atol=1e-10)
    # the implicit rewards and their accuracy/margin are TRL's logged rewards/* metrics
    m = trl_dpo._metrics["train"]
    assert ours.chosen_rewards.mean().item() == pytest.approx(m["rewards/chosen"][-1], abs=1e-6)
    assert ours.rejected_rewards.mean().item() == pytest.approx(m["rewards/rejected"][-1], abs=1e-6)
    margin = (ours.chosen_rewards - ours.rejected_rewards).mean().item()
    assert margin == pytest.approx(m["rewards/margins"][-1], abs=1e-6)
    acc = (ours.chosen_rewards > ours.rejected_rewards).double().mean().item()
    assert acc == pytest.approx(m["rewards/accuracies"][-1], abs=1e-6)  # TRL logs it in float32


def test_dpo_loss_matches_trl_float32(trl_dpo):
    per_token, cmask, ref_c, ref_r = (t.float() for t in dpo_tensors(2))
    per_token = per_token.detach().requires_grad_()
    trl_loss = trl_dpo_loss(trl_dpo, per_token, cmask, ref_c, ref_r, beta=0.1)
    seq = per_token.sum(dim=1)
    B = ref_c.shape[0]
    ours = dpo_loss(seq[:B], seq[B:], ref_c, ref_r, beta=0.1)
    assert abs(ours.loss.item() - trl_loss.item()) <= 1e-6
    torch.testing.assert_close(_grad(ours.loss, per_token), _grad(trl_loss, per_token), rtol=1e-5, atol=1e-8)


def test_ipo_loss_matches_trl_ipo(trl_dpo):
    per_token, cmask, ref_c, ref_r = dpo_tensors(3)
    trl_loss = trl_dpo_loss(trl_dpo, per_token, cmask, ref_c, ref_r, beta=0.3, loss_type="ipo")
    seq = per_token.sum(dim=1)
    lengths = cmask.sum(dim=1)  # TRL divides by the (unshifted) completion token count
    B = ref_c.shape[0]
    ours = ipo_loss(seq[:B], seq[B:], ref_c, ref_r, beta=0.3, chosen_lengths=lengths[:B], rejected_lengths=lengths[B:])
    assert abs(ours.loss.item() - trl_loss.item()) <= 1e-6 * max(1.0, abs(trl_loss.item()))
    torch.testing.assert_close(_grad(ours.loss, per_token), _grad(trl_loss, per_token), rtol=1e-6, atol=1e-10)


# ------------------------------------------------------------------------------------------------
# per-token log-probs of a real model: sequence_logprobs vs TRL's fused LM head
# ------------------------------------------------------------------------------------------------


def test_sequence_logprobs_matches_trl_fused_head(trl_grpo):
    """Same model, left-padded prompts + right-padded completions (TRL's GRPO layout)."""
    model = trl_grpo.model  # already patched with TRL's fused LM head; plain forward is untouched
    g = torch.Generator().manual_seed(0)
    V = model.config.vocab_size
    B, P, C = 5, 4, 6
    prompt_len = torch.tensor([4, 2, 3, 1, 4])
    comp_len = torch.tensor([6, 3, 1, 5, 2])
    prompt_mask = (torch.arange(P)[None] >= (P - prompt_len)[:, None]).long()  # left padding
    completion_mask = (torch.arange(C)[None] < comp_len[:, None]).long()  # right padding
    ids = torch.randint(3, V, (B, P + C), generator=g)
    attn = torch.cat([prompt_mask, completion_mask], dim=1)
    ids = ids.masked_fill(attn == 0, 0)
    # the class method (the fixture's instance attribute may hold a stub from the loss tests)
    trl_lp, _, _ = type(trl_grpo)._get_per_token_logps_and_entropies(trl_grpo, model, ids, attn, C)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits
    cmask_full = torch.cat([torch.zeros_like(prompt_mask), completion_mask], dim=1)
    ours = sequence_logprobs(logits, ids, cmask_full)[:, -C:]
    torch.testing.assert_close(ours * completion_mask, trl_lp.detach() * completion_mask, rtol=1e-5, atol=1e-5)
