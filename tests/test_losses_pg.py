"""Policy-gradient losses against hand-computed values and autograd."""

import math

import numpy as np
import pytest
import torch

from policylab import losses
from policylab.losses import (
    actor_critic_loss,
    approx_kl,
    clip_fraction,
    entropy_bonus,
    ppo_clip_loss,
    reinforce_loss,
    value_loss,
)


def test_exported_from_package():
    for name in ["reinforce_loss", "actor_critic_loss", "ppo_clip_loss", "value_loss",
                 "entropy_bonus", "approx_kl", "clip_fraction", "kl_k1", "kl_k3"]:
        assert callable(getattr(losses, name))


def _ppo_case():
    # ratios 1.5, 0.5, 1.1, 0.7, 1.5, 0.5 with advantages +2, −1, +1, +3, −2, +1
    ratio = torch.tensor([1.5, 0.5, 1.1, 0.7, 1.5, 0.5], dtype=torch.float64)
    adv = torch.tensor([2.0, -1.0, 1.0, 3.0, -2.0, 1.0], dtype=torch.float64)
    old_logp = torch.tensor([-0.3, -1.2, -0.7, -2.0, -0.1, -0.9], dtype=torch.float64)
    logp = (old_logp + torch.log(ratio)).requires_grad_(True)
    return logp, old_logp, adv


def test_ppo_clip_loss_hand_values_and_zero_gradient_where_clip_binds():
    logp, old_logp, adv = _ppo_case()
    eps = 0.2
    # min(ρA, clip(ρ)A) per sample, by hand:
    #  ρ=1.5,A=+2: min(3.0, 2.4)=2.4 (clipped)   ρ=0.5,A=−1: min(−0.5, −0.8)=−0.8 (clipped)
    #  ρ=1.1,A=+1: 1.1 (inside)                  ρ=0.7,A=+3: min(2.1, 2.4)=2.1 (unclipped side)
    #  ρ=1.5,A=−2: min(−3.0, −2.4)=−3.0 (unclipped side)   ρ=0.5,A=+1: min(0.5, 0.8)=0.5
    per = [2.4, -0.8, 1.1, 2.1, -3.0, 0.5]
    loss = ppo_clip_loss(logp, old_logp, adv, eps)
    assert loss.item() == pytest.approx(-sum(per) / 6, abs=1e-12)
    loss.backward()
    # d/dlogp of −ρA/n is −ρA/n where the unclipped term is chosen, exactly 0 where the clip binds
    expected = [0.0, 0.0, -1.1 / 6, -2.1 / 6, 3.0 / 6, -0.5 / 6]
    np.testing.assert_allclose(logp.grad.numpy(), expected, atol=1e-12)
    assert logp.grad[0].item() == 0.0 and logp.grad[1].item() == 0.0
    assert clip_fraction(logp, old_logp, eps).item() == pytest.approx(5 / 6)


def test_ppo_clip_loss_equals_pg_at_ratio_one():
    torch.manual_seed(0)
    logp = torch.randn(7, 3, requires_grad=True)
    adv = torch.randn(7, 3)
    loss = ppo_clip_loss(logp, logp.detach(), adv, 0.1)
    assert loss.item() == pytest.approx(-adv.mean().item(), abs=1e-6)
    loss.backward()
    np.testing.assert_allclose(logp.grad.numpy(), -adv.numpy() / 21, atol=1e-7)


def test_ppo_clip_loss_bad_input():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="advantages has shape"):
        ppo_clip_loss(x, x, torch.zeros(4), 0.2)
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_clip_loss(x, x, x, 0.0)
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_clip_loss(x, x, x, float("nan"))


def test_reinforce_loss_value_gradient_and_baseline_detached():
    logp = torch.tensor([-0.5, -1.0, -2.0], requires_grad=True)
    G = torch.tensor([3.0, 1.0, -1.0])
    b = torch.tensor([1.0, 1.0, 1.0], requires_grad=True)
    loss = reinforce_loss(logp, G, b)
    assert loss.item() == pytest.approx(-(-0.5 * 2 + 0 + -2.0 * -2) / 3)
    loss.backward()
    np.testing.assert_allclose(logp.grad.numpy(), [-2 / 3, 0.0, 2 / 3])
    assert b.grad is None  # the baseline is a constant inside the policy loss
    assert reinforce_loss(logp, G).item() == pytest.approx(-(-1.5 - 1.0 + 2.0) / 3)


def test_actor_critic_loss_is_the_lectures_three_step_update():
    # one transition: V(s)=w0, V(s')=w1, r=1, γ=0.9  ->  δ = 1 + 0.9 w1 − w0
    w = torch.tensor([0.5, 2.0], requires_grad=True)
    theta_logp = torch.tensor([-0.7], requires_grad=True)
    delta = 1.0 + 0.9 * w[1] - w[0]
    loss = actor_critic_loss(theta_logp, delta.reshape(1), w[0].reshape(1), value_coef=1.0)
    loss.backward()
    d = 1.0 + 0.9 * 2.0 - 0.5
    # critic: −∇_w L = δ ∇_w V(s): semi-gradient, nothing flows into V(s')
    np.testing.assert_allclose(w.grad.numpy(), [-d, 0.0], atol=1e-7)
    # actor: −∇_θ L = δ ∇ log π
    np.testing.assert_allclose(theta_logp.grad.numpy(), [-d], atol=1e-7)
    assert loss.item() == pytest.approx(0.7 * d + 0.5 * d * d, rel=1e-6)


def test_value_loss_plain_and_clipped():
    v = torch.tensor([1.0, 3.0, 0.0], requires_grad=True)
    R = torch.tensor([2.0, 0.0, 0.0])
    assert value_loss(v, R).item() == pytest.approx(0.5 * (1 + 9 + 0) / 3)
    old = torch.tensor([1.5, 2.0, 0.0])
    # clipped values (ε=0.2): [1.3, 2.2, 0.0]; squared errors unclipped [1, 9, 0], clipped
    # [0.49, 4.84, 0] -> max [1, 9, 0]; with old=[0.5, 3.5, 0]: clipped [0.7, 3.3, 0] -> [1.69, 10.89, 0]
    assert value_loss(v, R, old, 0.2).item() == pytest.approx(0.5 * 10 / 3)
    old2 = torch.tensor([0.5, 3.5, 0.0])
    loss = value_loss(v, R, old2, 0.2)
    assert loss.item() == pytest.approx(0.5 * (1.69 + 10.89) / 3)
    loss.backward()
    # the clipped branch wins for samples 0 and 1 and is flat in v there (|v − old| > ε)
    np.testing.assert_allclose(v.grad.numpy(), [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="both old_values and clip_eps"):
        value_loss(v, R, old)


def test_entropy_bonus_and_kl_estimators():
    H = torch.tensor([0.5, 1.5])
    assert entropy_bonus(H).item() == pytest.approx(-1.0)
    logp = torch.log(torch.tensor([0.5, 0.25]))
    old = torch.log(torch.tensor([0.25, 0.5]))
    # ρ = [2, 0.5]: k3 = mean[(ρ−1) − log ρ], k1 = mean[old − logp]
    k3 = ((1 - math.log(2)) + (-0.5 + math.log(2))) / 2
    assert approx_kl(logp, old).item() == pytest.approx(k3)
    assert approx_kl(logp, old, "k1").item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="estimator"):
        approx_kl(logp, old, "k2")


def test_approx_kl_k3_estimates_true_kl():
    p_old = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    p_new = torch.tensor([0.4, 0.4, 0.2], dtype=torch.float64)
    true_kl = (p_old * (p_old / p_new).log()).sum().item()
    a = torch.multinomial(p_old, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    est = approx_kl(p_new.log()[a], p_old.log()[a]).item()
    assert est == pytest.approx(true_kl, rel=0.02)
