"""Pure LLM pieces: sequence_logprobs, grpo_loss, dpo_loss/ipo_loss, group advantages (hand-computed)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab.llm import sequence_logprobs
from policylab.losses import GRPO_NORMALIZATIONS, dpo_loss, grpo_loss, ipo_loss, kl_k3
from policylab.returns import group_relative_advantages

torch.set_num_threads(1)


def naive_logprobs(logits, ids, mask):
    """Reference: full log_softmax, shift by one, gather, multiply by mask; (B, T) aligned with ids."""
    lp = torch.log_softmax(logits[:, :-1].double(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return torch.cat([torch.zeros(ids.shape[0], 1, dtype=lp.dtype), lp * mask[:, 1:]], dim=1)


def padded_batch(padding: str):
    """3 sequences of width 8: prompt lengths 2,3,1 and completion lengths 3,2,4, padded left or right."""
    lens = [(2, 3), (3, 2), (1, 4)]
    T = 8
    ids = torch.randint(1, 13, (3, T))
    comp = torch.zeros(3, T)
    attn = torch.zeros(3, T)
    for b, (p, c) in enumerate(lens):
        start = T - p - c if padding == "left" else 0
        attn[b, start : start + p + c] = 1
        comp[b, start + p : start + p + c] = 1
        ids[b, attn[b] == 0] = 0  # pad id
    return ids, comp, attn


@pytest.mark.parametrize("padding", ["left", "right"])
def test_sequence_logprobs_matches_naive_and_masks_gradient(padding):
    torch.manual_seed(0)
    ids, comp, _ = padded_batch(padding)
    logits = torch.randn(3, 8, 13, dtype=torch.float64, requires_grad=True)
    lp = sequence_logprobs(logits, ids, comp)
    assert lp.shape == (3, 8)
    torch.testing.assert_close(lp, naive_logprobs(logits, ids, comp), atol=1e-12, rtol=0)
    assert torch.all(lp[comp == 0] == 0)
    lp.sum().backward()
    g = logits.grad.abs().sum(-1)  # (B, T): gradient reaching the logits at each position
    # logits at position t predict token t+1: nonzero gradient exactly where token t+1 is a completion token
    predicts_completion = torch.cat([comp[:, 1:], torch.zeros(3, 1)], dim=1).bool()
    assert torch.all(g[~predicts_completion] == 0)  # prompt and padding: exactly zero
    assert torch.all(g[predicts_completion] > 0)


def test_sequence_logprobs_truncated_logits_and_temperature():
    torch.manual_seed(1)
    ids, comp, _ = padded_batch("left")  # completions occupy at most the last 4 columns
    logits = torch.randn(3, 8, 13, dtype=torch.float64)
    full = sequence_logprobs(logits, ids, comp, temperature=0.7)
    tail = sequence_logprobs(logits[:, -5:], ids, comp, temperature=0.7, chunk_rows=2)
    torch.testing.assert_close(full, tail, atol=1e-12, rtol=0)
    torch.testing.assert_close(full, naive_logprobs(logits / 0.7, ids, comp), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="logits_to_keep"):
        sequence_logprobs(logits[:, -3:], ids, comp)


def test_sequence_logprobs_neg_inf_logits_do_not_leak_nan():
    ids = torch.tensor([[1, 2, 3]])
    comp = torch.tensor([[0, 0, 1]])
    logits = torch.zeros(1, 3, 4, requires_grad=True)
    with torch.no_grad():
        logits[0, 0, 2] = -math.inf  # masked position: log π(x_1) = −inf
    lp = sequence_logprobs(logits, ids, comp)
    lp.sum().backward()
    assert torch.isfinite(logits.grad).all() and torch.all(logits.grad[0, 0] == 0)
    assert lp[0, 2].item() == pytest.approx(-math.log(4))


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(2, 9), V=st.integers(2, 17), seed=st.integers(0, 10_000))
def test_sequence_logprobs_property(B, T, V, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64) * 3
    ids = torch.randint(0, V, (B, T), generator=g)
    comp = (torch.rand(B, T, generator=g) < 0.6).long()
    comp[:, 0] = 0
    torch.testing.assert_close(sequence_logprobs(logits, ids, comp), naive_logprobs(logits, ids, comp))


def test_sequence_logprobs_bad_shapes():
    with pytest.raises(ValueError, match="completion_mask shape"):
        sequence_logprobs(torch.zeros(1, 3, 4), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="logits must be"):
        sequence_logprobs(torch.zeros(2, 3, 4), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3))


# ------------------------------------------------------------------------------------- GRPO loss

L = math.log
LOGP = torch.tensor([[L(0.5), L(0.25)], [L(0.5), 0.0]], dtype=torch.float64)
OLD = torch.tensor([[L(0.25), L(0.25)], [L(0.5), 0.0]], dtype=torch.float64)
ADV = torch.tensor([1.0, -1.0], dtype=torch.float64)
MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
# ρ = [[2, 1], [1, ·]]; ℓ = −min(ρÂ, clip(ρ, 0.8, 1.2)Â) = [[−1.2, −1], [1, ·]]


@pytest.mark.parametrize(
    "norm,expected",
    [("grpo", (-1.1 + 1.0) / 2), ("sequence", -0.05), ("bnpo", -0.4), ("dapo", -0.4), ("token", -0.4),
     ("dr_grpo", -1.2 / (2 * 4)), ("constant", -1.2 / (2 * 4))],
)
def test_grpo_loss_hand_computed(norm, expected):
    loss, stats = grpo_loss(LOGP, OLD, None, ADV, MASK, clip_eps=0.2, normalization=norm, max_len=4)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert stats["clip_ratio"].item() == pytest.approx(1 / 3)  # only token (0,0): ρ=2>1.2 with Â>0
    assert stats["clip_ratio/high"].item() == pytest.approx(1 / 3) and stats["clip_ratio/low"].item() == 0
    assert stats["kl"].item() == 0


def test_grpo_loss_constant_defaults_to_padded_width_and_eps_high():
    loss, _ = grpo_loss(LOGP, OLD, None, ADV, MASK, normalization="dr_grpo")
    assert loss.item() == pytest.approx(-1.2 / 4)
    loss, stats = grpo_loss(LOGP, OLD, None, ADV, MASK, clip_eps_high=2.0, normalization="token")
    assert loss.item() == pytest.approx((-2 - 1 + 1) / 3)  # ρ=2 no longer clipped
    assert stats["clip_ratio"].item() == 0


def test_grpo_loss_kl_term_k3():
    ref = torch.tensor([[L(0.25), L(0.25)], [L(0.5), 5.0]], dtype=torch.float64)
    beta = 0.1
    loss, stats = grpo_loss(LOGP, OLD, ref, ADV, MASK, beta=beta, normalization="token")
    k = math.log(2) - 0.5  # k3 with log π_ref − log π = −log 2: e^{−log2} + log 2 − 1
    assert loss.item() == pytest.approx((-1.2 + beta * k - 1 + 1) / 3)
    assert stats["kl"].item() == pytest.approx(k / 3)
    torch.testing.assert_close(kl_k3(LOGP[0, :1], ref[0, :1]), torch.tensor([k], dtype=torch.float64))


def test_grpo_loss_on_policy_gradient_is_policy_gradient():
    """old_logp=None (one update per batch): value −mean Â, gradient −Â ∇log π / normalizer."""
    logp = LOGP.clone().requires_grad_(True)
    loss, _ = grpo_loss(logp, None, None, ADV, MASK, normalization="token")
    assert loss.item() == pytest.approx(-(1 + 1 - 1) / 3)
    loss.backward()
    torch.testing.assert_close(logp.grad, -ADV[:, None] * MASK / 3)


def test_grpo_loss_bad_inputs():
    with pytest.raises(ValueError, match="normalization"):
        grpo_loss(LOGP, OLD, None, ADV, MASK, normalization="nope")
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(LOGP, OLD, None, ADV, MASK, beta=0.1)
    with pytest.raises(ValueError, match="mask has shape"):
        grpo_loss(LOGP, OLD, None, ADV, MASK[:, :1])
    with pytest.raises(ValueError, match="advantages has 3 rows"):
        grpo_loss(LOGP, OLD, None, torch.zeros(3), MASK)
    assert set(GRPO_NORMALIZATIONS) >= {"grpo", "bnpo", "dapo", "dr_grpo"}


# -------------------------------------------------------------------------------------- DPO loss


def test_dpo_loss_hand_computed():
    pc, pr = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0])
    rc, rr = torch.tensor([-1.5, -2.0]), torch.tensor([-1.5, -2.0])
    out = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # pair 0: h = 0.5·(0.5 − (−0.5)) = 0.5; pair 1: h = 0.5·(−1 − 1) = −1
    expected = [math.log1p(math.exp(-0.5)), math.log1p(math.exp(1.0))]
    torch.testing.assert_close(out.losses, torch.tensor(expected))
    assert out.loss.item() == pytest.approx(sum(expected) / 2)
    torch.testing.assert_close(out.chosen_rewards, torch.tensor([0.25, -0.5]))
    torch.testing.assert_close(out.rejected_rewards, torch.tensor([-0.25, 0.5]))
    smooth = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.1)
    s0 = 0.9 * math.log1p(math.exp(-0.5)) + 0.1 * math.log1p(math.exp(0.5))
    assert smooth.losses[0].item() == pytest.approx(s0, rel=1e-6)


def test_dpo_loss_gradient_sign_and_bad_inputs():
    pc = torch.tensor([-1.0], requires_grad=True)
    pr = torch.tensor([-1.0], requires_grad=True)
    dpo_loss(pc, pr, torch.tensor([-1.0]), torch.tensor([-1.0]), beta=0.1).loss.backward()
    assert pc.grad.item() == pytest.approx(-0.05) and pr.grad.item() == pytest.approx(0.05)  # −β σ(−0)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(pc, pr, pc, pr, beta=0.0)
    with pytest.raises(ValueError, match="ref_rejected has shape"):
        dpo_loss(pc, pr, pc, torch.zeros(2), beta=0.1)


def test_ipo_loss_hand_computed():
    out = ipo_loss(torch.tensor([-1.0]), torch.tensor([-4.0]), torch.tensor([-2.0]), torch.tensor([-2.0]),
                   beta=0.5, chosen_lengths=torch.tensor([2]), rejected_lengths=torch.tensor([4]))
    # h = 1/2 − (−2)/4 = 1; ℓ = (1 − 1/(2·0.5))² = 0
    assert out.loss.item() == pytest.approx(0.0)
    out = ipo_loss(torch.tensor([-1.0]), torch.tensor([-4.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
    assert out.loss.item() == pytest.approx((1 + 2 - 1) ** 2)


# ---------------------------------------------------------------------------- group advantages


def test_group_advantages_equal_rewards_zero_and_finite():
    r = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    for scale in ("none", "std"):
        a = group_relative_advantages(r, 4, scale=scale)
        assert torch.isfinite(a).all() and torch.all(a[:4] == 0)
    a = group_relative_advantages(np.array([0.0, 0.0, 1.0, 0.0]), 2, scale="std")
    np.testing.assert_allclose(a, [0, 0, 0.5 / (math.sqrt(0.5) + 1e-4), -0.5 / (math.sqrt(0.5) + 1e-4)])


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(1, 6), seed=st.integers(0, 10_000), eps=st.floats(0.05, 0.5))
def test_grpo_normalizations_agree_on_full_masks(B, T, seed, eps):
    """With every completion T tokens long, per-sequence, per-token and constant (L_max = T) agree."""
    g = torch.Generator().manual_seed(seed)
    logp = torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3 - 1
    old = logp + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.float64)
    values = [grpo_loss(logp, old, None, adv, mask, clip_eps=eps, normalization=n, max_len=T)[0].item()
              for n in ("grpo", "bnpo", "dr_grpo")]
    assert values == pytest.approx([values[0]] * 3, rel=1e-12, abs=1e-12)
    ratio = torch.exp(logp - old)
    expected = -torch.min(ratio * adv[:, None], ratio.clamp(1 - eps, 1 + eps) * adv[:, None]).mean()
    assert values[0] == pytest.approx(expected.item(), rel=1e-12, abs=1e-12)


def test_sample_next_token_top_k_top_p_and_greedy():
    from policylab.llm.sampling import sample_next_token

    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    assert torch.all(sample_next_token(logits, temperature=0.0) == 0)
    assert torch.all(sample_next_token(logits, top_k=1) == 0)
    nucleus = sample_next_token(logits, top_p=0.7)  # {0.5, 0.3} reaches 0.8 ≥ 0.7: tokens 0 and 1 only
    assert set(nucleus.tolist()) == {0, 1}
    assert (nucleus == 0).float().mean().item() == pytest.approx(0.5 / 0.8, abs=0.03)
    top2 = sample_next_token(logits, top_k=3)
    assert set(top2.tolist()) == {0, 1, 2}
    freq = torch.bincount(sample_next_token(logits), minlength=4).double() / 4000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64), atol=0.03, rtol=0)
    p_half = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64) ** 2  # temperature 0.5: p ∝ p²
    freq = torch.bincount(sample_next_token(logits, temperature=0.5), minlength=4).double() / 4000
    torch.testing.assert_close(freq, p_half / p_half.sum(), atol=0.03, rtol=0)


def test_token_entropy_matches_definition():
    from policylab.llm.logprobs import token_entropy

    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7, dtype=torch.float64)
    p = torch.softmax(logits / 0.5, -1)
    torch.testing.assert_close(token_entropy(logits, 0.5, chunk_rows=2), -(p * p.log()).sum(-1).float())
    assert token_entropy(torch.zeros(1, 1, 8))[0, 0].item() == pytest.approx(math.log(8), rel=1e-6)


# ------------------------------------------------------------------ GRPO exactly as lecture §7.2


def lecture_grpo_objective(logp, old_logp, rewards, mask, G, eps):
    """L^GRPO of lecture §7.2 written out with loops (to MAXIMIZE): for each group of G completions,
    Â_i = r_i − r̄ and (1/G) Σ_i Σ_t min(ρ_{i,t} Â_i, clip(ρ_{i,t}, 1−ε, 1+ε) Â_i); Ê = mean over groups."""
    per_group = []
    for g in range(len(rewards) // G):
        rows = range(g * G, (g + 1) * G)
        r_bar = sum(rewards[i] for i in rows) / G
        total = 0.0
        for i in rows:
            a = rewards[i] - r_bar
            for t in range(len(logp[i])):
                if mask[i][t]:
                    rho = math.exp(logp[i][t] - old_logp[i][t])
                    total += min(rho * a, min(max(rho, 1 - eps), 1 + eps) * a)
        per_group.append(total / G)
    return sum(per_group) / len(per_group)


def test_lecture_loss_type_is_the_lectures_formula_on_fixed_tensors():
    G, eps = 3, 0.2
    logp = torch.tensor([[-1.0, -2.0, -0.5, 0.0], [-0.3, -1.2, 0.0, 0.0], [-2.0, -0.1, -0.7, -0.4],
                         [-0.9, 0.0, 0.0, 0.0], [-1.5, -0.2, -3.0, 0.0], [-0.6, -0.6, 0.0, 0.0]], dtype=torch.float64)
    old = logp + torch.tensor([[0.3, -0.25, 0.05, 0], [-0.4, 0.1, 0, 0], [0.0, 0.5, -0.1, 0.22],
                               [0.15, 0, 0, 0], [-0.3, 0.3, 0.01, 0], [0.0, -0.5, 0, 0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0, -1.0, 0.25], dtype=torch.float64)
    adv = group_relative_advantages(rewards, G, scale="none")  # Â_i = r_i − mean of its group
    loss, _ = grpo_loss(logp, old, None, adv, mask, clip_eps=eps, normalization="lecture")
    expected = -lecture_grpo_objective(logp.tolist(), old.tolist(), rewards.tolist(), mask.tolist(), G, eps)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # and it is none of TRL's reductions on these tensors (lengths differ): the formula is distinct
    for other in ("grpo", "dapo", "dr_grpo"):
        assert grpo_loss(logp, old, None, adv, mask, clip_eps=eps, normalization=other)[0].item() != pytest.approx(expected)


def test_lecture_loss_gradient_is_sum_over_tokens_divided_by_B():
    """∂L/∂log π_{i,t} = −Â_i ρ/B on unclipped tokens (ρ = 1 at π_old = π_θ): no 1/|y_i| factor."""
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -0.1]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv = torch.tensor([0.5, -0.5])
    loss, _ = grpo_loss(logp, None, None, adv, mask, normalization="lecture")
    loss.backward()
    torch.testing.assert_close(logp.grad, -(adv[:, None] * mask) / 2)
