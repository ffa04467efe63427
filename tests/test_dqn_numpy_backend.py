"""DQN's numpy backend (deep/fast/qlearning.py) against autograd on the same inputs, the Huber/MSE
derivative, Adam's subnormal flush, the backend choice, and ε-greedy ``act``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policylab.deep.dqn import DQN
from policylab.deep.fast.optim import adam_step
from policylab.errors import ConfigError
from policylab.losses.grads import dqn_loss_grad
from policylab.losses.value_based import dqn_loss


@pytest.mark.parametrize("kind", ["huber", "mse"])
def test_dqn_loss_grad_equals_autograd(kind):
    rng = np.random.default_rng(0)
    q = rng.normal(0, 2, 64).astype(np.float32)
    y = rng.normal(0, 2, 64).astype(np.float32)
    y[:3] = q[:3] + np.float32([1.0, -1.0, 0.5])  # Huber's kinks and the quadratic part
    qt = torch.tensor(q, requires_grad=True)
    loss = dqn_loss(qt, torch.tensor(y), kind)
    loss.backward()
    np.testing.assert_allclose(dqn_loss_grad(q, y, kind), qt.grad.numpy(), rtol=1e-6, atol=1e-9)
    assert dqn_loss(q, y, kind) == pytest.approx(loss.item(), rel=1e-6)


def _batch(rng, obs_dim=4, n_actions=2, b=32):
    obs = rng.normal(0, 1, (b, obs_dim)).astype(np.float32)
    next_obs = rng.normal(0, 1, (b, obs_dim)).astype(np.float32)
    actions = rng.integers(0, n_actions, b)
    rewards = rng.normal(0, 3, b).astype(np.float32)  # |δ| > 1 on some rows: Huber's linear part
    discounts = np.where(rng.random(b) < 0.2, 0.0, 0.99).astype(np.float32)
    return obs, actions, rewards, next_obs, discounts


@pytest.mark.parametrize("loss, double_q, activation, clip, cql_alpha", [
    ("huber", False, "relu", 10.0, 0.0), ("mse", True, "relu", 0.05, 0.0), ("huber", True, "tanh", 0.5, 0.0),
    ("mse", False, "elu", 10.0, 0.0), ("huber", False, "relu", 10.0, 1.0), ("mse", True, "tanh", 0.5, 3.0)])
def test_numpy_td_step_equals_autograd(loss, double_q, activation, clip, cql_alpha):
    """Same weights, same minibatches: every step's TD loss, mean Q, CQL regularizer and the
    parameters after clip + Adam agree with the torch backend's to ~1e-6 (clip 0.05 binds on every
    step; cql_alpha > 0 adds α(softmax Q − onehot a)/B to ∂L/∂Q)."""
    kw = {"hidden_sizes": (32, 32), "activation": activation, "learning_rate": 3e-3}
    agents = {b: DQN("CartPole-v1", seed=3, backend=b, **kw) for b in ("numpy", "torch")}
    assert agents["numpy"].backend.name == "numpy" and agents["torch"].backend.name == "torch"
    rng = np.random.default_rng(1)
    for step in range(6):
        batch = _batch(rng)
        out = {b: a.backend.td_step(*batch, double_q=double_q, loss=loss, max_grad_norm=clip,
                                            cql_alpha=cql_alpha)
               for b, a in agents.items()}
        np.testing.assert_allclose(out["numpy"], out["torch"], rtol=1e-5, atol=1e-6, err_msg=f"step {step}")
        np.testing.assert_allclose(agents["numpy"].flat_params.detach().numpy(),
                                   agents["torch"].flat_params.detach().numpy(), rtol=0, atol=2e-6,
                                   err_msg=f"parameters after step {step}")
        if step == 2:  # a hard target update on both, then Q_θ⁻ differs from the initial copy
            for a in agents.values():
                a.flat_target.data.copy_(a.flat_params.data)
    q_np = agents["numpy"].backend.q_values(batch[0])
    np.testing.assert_allclose(q_np, agents["torch"].backend.q_values(batch[0]), atol=1e-5)


def test_adam_flushes_subnormal_moments_with_torch_numbers():
    """Moments that decay into subnormals are set to 0; the parameters still equal torch's Adam."""
    p1 = torch.nn.Parameter(torch.linspace(-1, 1, 50))
    p2 = torch.nn.Parameter(p1.detach().clone())
    o1, o2 = torch.optim.Adam([p1], lr=1e-2), torch.optim.Adam([p2], lr=1e-2)
    p2.grad = torch.zeros(50)
    g = torch.linspace(-1, 1, 50)
    for t in range(900):  # gradient on the first step only: m decays by 0.9 per step to < 1e-38
        p1.grad = g.clone() if t == 0 else torch.zeros(50)
        o1.step()
        p2.grad.copy_(g if t == 0 else torch.zeros(50))
        adam_step(o2, p2)
    m_torch, m_np = o1.state[p1]["exp_avg"], o2.state[p2]["exp_avg"]
    assert ((m_torch != 0) & (m_torch.abs() < 1.2e-38)).any()  # torch keeps subnormals
    assert not ((m_np != 0) & (m_np.abs() < 1.1754944e-38)).any()
    torch.testing.assert_close(p2.detach(), p1.detach(), rtol=0, atol=1e-6)


def test_backend_choice_and_bad_backend():
    assert DQN("CartPole-v1", hidden_sizes=(8,)).backend.name == "numpy"  # auto
    agent = DQN("CartPole-v1", hidden_sizes=(8,), backend="torch")
    assert agent.backend.name == "torch" and "DQN backend: torch (asked for)" in agent.notes
    with pytest.raises(ConfigError, match="backend"):
        DQN("CartPole-v1", backend="jax")


def test_act_nondeterministic_is_epsilon_greedy():
    """``act(deterministic=False)`` takes the greedy action with probability 1 − ε + ε/|A|, as SB3's
    ``predict(deterministic=False)``; ε = 0 is the greedy action."""
    agent = DQN("Acrobot-v1", seed=0, hidden_sizes=(16,))
    obs = np.random.default_rng(0).normal(0, 1, (20_000, agent.obs_dim)).astype(np.float32)
    greedy = agent.act(obs)
    agent.exploration_rate = 0.0
    assert np.array_equal(agent.act(obs, deterministic=False), greedy)
    agent.exploration_rate = 0.3
    a = agent.act(obs, deterministic=False, generator=torch.Generator().manual_seed(0))
    n = agent.head.n
    assert np.mean(a == greedy) == pytest.approx(1 - 0.3 + 0.3 / n, abs=0.015)
    others = a[a != greedy]  # the random draws that differ from greedy: uniform over the other actions
    assert np.isin(others, np.arange(n)).all() and len(np.unique(others)) == n
    single = agent.act(obs[0], deterministic=False)
    assert np.ndim(single) == 0 and 0 <= single < n
