"""Lecture §7.3's derivation, numerically, on one-token completions over a small vocabulary (issue 13 item 5):
π* = π_ref·exp(r/β)/Z maximizes the KL-regularized objective; DPO's implicit reward β log π*/π_ref is r up
to a per-prompt constant; DPO on Bradley–Terry(r) preferences moves a tabular policy to π*."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab.losses import (
    dpo_loss,
    implicit_reward,
    kl_regularized_objective,
    kl_regularized_optimum,
)

torch.set_num_threads(1)
X, Y = 3, 5  # prompts, one-token completions


def problem(seed: int):
    g = torch.Generator().manual_seed(seed)
    ref = torch.softmax(torch.randn(X, Y, generator=g, dtype=torch.float64), -1)
    reward = torch.randn(X, Y, generator=g, dtype=torch.float64)
    return ref, reward


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.05, 5.0), noise=st.floats(0.01, 3.0))
def test_optimum_maximizes_the_kl_regularized_objective(seed, beta, noise):
    ref, reward = problem(seed)
    best = kl_regularized_optimum(ref, reward, beta)
    torch.testing.assert_close(best.sum(-1), torch.ones(X, dtype=torch.float64))
    j_best = kl_regularized_objective(best, ref, reward, beta)
    log_z = torch.logsumexp(torch.log(ref) + reward / beta, -1)
    torch.testing.assert_close(j_best, beta * log_z, rtol=1e-10, atol=1e-10)  # max J = β log Z
    g = torch.Generator().manual_seed(seed + 1)
    other = torch.softmax(torch.log(best) + noise * torch.randn(X, Y, generator=g, dtype=torch.float64), -1)
    gap = j_best - kl_regularized_objective(other, ref, reward, beta)
    # J(π*) − J(π) = β KL(π ‖ π*) ≥ 0, exactly
    kl = (other * (torch.log(other) - torch.log(best))).sum(-1)
    torch.testing.assert_close(gap, beta * kl, rtol=1e-8, atol=1e-12)
    assert bool((gap >= -1e-12).all())


def test_optimum_is_a_stationary_point_on_the_simplex():
    ref, reward = problem(0)
    beta = 0.7
    logits = torch.log(kl_regularized_optimum(ref, reward, beta)).requires_grad_(True)
    kl_regularized_objective(torch.softmax(logits, -1), ref, reward, beta).sum().backward()
    assert logits.grad.abs().max().item() < 1e-12


def test_implicit_reward_of_the_optimum_is_the_reward_up_to_a_per_prompt_constant():
    ref, reward = problem(1)
    for beta in (0.1, 1.0, 3.0):
        best = kl_regularized_optimum(ref, reward, beta)
        r_hat = implicit_reward(torch.log(best), torch.log(ref), beta)  # (X, Y)
        offset = reward - r_hat  # one constant per prompt: β log Z(x)
        torch.testing.assert_close(offset, offset[:, :1].expand(X, Y), rtol=0, atol=1e-12)
        torch.testing.assert_close(offset[:, 0], beta * torch.logsumexp(torch.log(ref) + reward / beta, -1))
        # hence Bradley–Terry probabilities from r̂ equal those from r
        bt = torch.sigmoid(reward[:, :, None] - reward[:, None, :])
        bt_hat = torch.sigmoid(r_hat[:, :, None] - r_hat[:, None, :])
        torch.testing.assert_close(bt_hat, bt, rtol=0, atol=1e-12)


def kl(p, q):
    return (p * (torch.log(p) - torch.log(q))).sum(-1)


def test_dpo_on_bradley_terry_preferences_moves_a_tabular_policy_to_the_optimum():
    ref, reward = problem(2)
    beta, n = 0.5, 20_000
    target = kl_regularized_optimum(ref, reward, beta)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, X, (n,), generator=g)
    y1, y2 = torch.randint(0, Y, (n,), generator=g), torch.randint(0, Y, (n,), generator=g)
    keep = y1 != y2
    x, y1, y2 = x[keep], y1[keep], y2[keep]
    first_wins = torch.rand(len(x), generator=g, dtype=torch.float64) < torch.sigmoid(reward[x, y1] - reward[x, y2])
    yw, yl = torch.where(first_wins, y1, y2), torch.where(first_wins, y2, y1)

    logits = torch.log(ref).clone().requires_grad_(True)  # tabular policy π_θ = softmax(θ), starts at π_ref
    start = kl(target, torch.softmax(logits.detach(), -1))
    opt = torch.optim.Adam([logits], lr=0.05)
    log_ref = torch.log(ref)
    for _ in range(400):
        logp = torch.log_softmax(logits, -1)
        loss = dpo_loss(logp[x, yw], logp[x, yl], log_ref[x, yw], log_ref[x, yl], beta).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy = torch.softmax(logits.detach(), -1)
    end = kl(target, policy)
    assert bool((end < 0.05 * start).all()), (start, end)
    # the learned implicit reward is r up to a per-prompt constant, within sampling noise
    r_hat = implicit_reward(torch.log(policy), log_ref, beta)
    centered = (r_hat - r_hat.mean(-1, keepdim=True)) - (reward - reward.mean(-1, keepdim=True))
    assert centered.abs().max().item() < 0.15


def test_bad_inputs():
    ref, reward = problem(0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        kl_regularized_optimum(ref, reward, 0.0)
    with pytest.raises(ValueError, match="reward has shape"):
        kl_regularized_optimum(ref, reward[:, :2], 1.0)
    assert math.isfinite(kl_regularized_objective(torch.eye(Y, dtype=torch.float64)[:X], ref, reward, 1.0).sum().item())
