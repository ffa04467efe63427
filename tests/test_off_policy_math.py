"""Pure off-policy math: n-step returns, Q-learning / double-DQN targets, DQN and SAC losses,
polyak averaging, the squashed-Gaussian log-density. Hand-computed values and independent checks."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from policylab import returns
from policylab.errors import InputError
from policylab.losses.grads import cql_regularizer_grad
from policylab.losses.value_based import (
    cql_regularizer,
    double_q_learning_target,
    dqn_loss,
    polyak_update,
    q_learning_target,
    sac_actor_loss,
    sac_critic_loss,
    sac_temperature_loss,
    soft_q_target,
    tanh_gaussian_log_prob,
)

R = np.array([1.0, 2.0, 3.0, 4.0])
V = np.array([10.0, 20.0, 30.0, 40.0])


# ----------------------------------------------------------------------------- n-step returns
def test_n_step_hand_values():
    # G0 = 1 + .5·2 + .25·V[1]; G3 = 4 + .5·V[3] (array end after one step)
    assert np.allclose(returns.n_step_returns(R, 0.5, V, 2), [7.0, 11.0, 15.0, 24.0])


def test_n_step_termination_does_not_bootstrap():
    term = np.array([False, True, False, False])
    assert np.allclose(returns.n_step_returns(R, 0.5, V, 2, terminated=term), [2.0, 2.0, 15.0, 24.0])


def test_n_step_truncation_bootstraps_from_final_obs():
    trunc = np.array([True, False, False, False])
    # row 0 bootstraps from V[0] (its true final obs) and row 1 starts a new episode
    assert np.allclose(returns.n_step_returns(R, 0.5, V, 2, truncated=trunc), [6.0, 11.0, 15.0, 24.0])
    # termination wins when both flags are set
    both = returns.n_step_returns(R, 0.5, V, 2, terminated=trunc, truncated=trunc)
    assert np.isclose(both[0], 1.0)


def _n_step_reference(r, g, v, n, term, trunc):
    T = len(r)
    out = np.zeros(T)
    for t in range(T):
        acc, disc = 0.0, 1.0
        for k in range(n):
            j = t + k
            acc += disc * r[j]
            disc *= g
            if term[j]:
                break
            if trunc[j] or j == T - 1 or k == n - 1:
                acc += disc * v[j]
                break
        out[t] = acc
    return out


@given(st.integers(1, 12), st.integers(1, 6), st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_n_step_matches_loop_reference(T, n, gamma, seed):
    rng = np.random.default_rng(seed)
    r, v = rng.normal(size=T), rng.normal(size=T)
    term, trunc = rng.random(T) < 0.2, rng.random(T) < 0.2
    got = returns.n_step_returns(r, gamma, v, n, terminated=term, truncated=trunc)
    assert np.allclose(got, _n_step_reference(r, gamma, v, n, term, trunc))


def test_n_step_special_cases_and_batch():
    rng = np.random.default_rng(1)
    r, v = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    term = rng.random((6, 3)) < 0.3
    one = returns.n_step_returns(r, 0.9, v, 1, terminated=term)
    assert np.allclose(one, r + 0.9 * (1 - term) * v)
    # n ≥ T with V = 0 is the Monte Carlo return
    full = returns.n_step_returns(r, 0.9, np.zeros_like(r), 10, terminated=term)
    assert np.allclose(full, returns.discounted_returns(r, 0.9, terminated=term))
    # each column is an independent stream
    col = returns.n_step_returns(r[:, 1], 0.9, v[:, 1], 3, terminated=term[:, 1])
    assert np.allclose(returns.n_step_returns(r, 0.9, v, 3, terminated=term)[:, 1], col)
    t = returns.n_step_returns(torch.tensor(r, dtype=torch.float32), 0.9, torch.tensor(v), 3)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    assert np.allclose(t.numpy(), returns.n_step_returns(r, 0.9, v, 3), atol=1e-5)


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 1.5}, {"v_tp1": np.zeros(3)}, {"discount_t": 1.5}])
def test_n_step_bad_input(kwargs):
    args = {"r_t": R, "discount_t": 0.9, "v_tp1": V, "n": 2} | kwargs
    with pytest.raises(InputError):
        returns.n_step_returns(**args)


# ----------------------------------------------------------------------------- DQN
def test_q_learning_and_double_targets():
    r, disc = torch.tensor([1.0, 0.0]), torch.tensor([0.9, 0.5])
    q_target = torch.tensor([[1.0, 3.0], [5.0, 2.0]])
    q_online = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
    assert torch.allclose(q_learning_target(r, disc, q_target), torch.tensor([1 + 0.9 * 3, 0.5 * 5]))
    # online net picks a'=[0, 1]; target net rates them: [1, 2]
    assert torch.allclose(double_q_learning_target(r, disc, q_target, q_online), torch.tensor([1.9, 1.0]))
    # double Q with the same net for both roles is plain Q-learning
    assert torch.allclose(double_q_learning_target(r, disc, q_target, q_target),
                          q_learning_target(r, disc, q_target))
    with pytest.raises(InputError):
        q_learning_target(r, disc, q_target[0])


def test_dqn_loss_hand_values_and_gradient():
    q = torch.tensor([0.0, 0.0], requires_grad=True)
    y = torch.tensor([0.5, 3.0])
    huber = dqn_loss(q, y, "huber")  # [½·0.25, 3 − ½] → mean 1.3125
    assert math.isclose(huber.item(), 1.3125)
    huber.backward()
    assert torch.allclose(q.grad, torch.tensor([-0.25, -0.5]))  # −clip(δ, ±1)/B
    assert math.isclose(dqn_loss(q, y, "mse").item(), 4.625)
    with pytest.raises(InputError):
        dqn_loss(q, y, "l1")
    with pytest.raises(InputError):
        dqn_loss(q, y[:1])


# ----------------------------------------------------------------------------- SAC
# ----------------------------------------------------------------------------- CQL
CQL_Q = np.array([[0.0, 0.0], [math.log(3), 0.0], [5.0, 5.0 + math.log(3)]])
CQL_A = np.array([0, 1, 1])


def test_cql_regularizer_hand_values():
    """Rows: logsumexp − Q(s, a) = ln 2; ln 4 − 0; (5 + ln 4) − (5 + ln 3). ∂/∂Q = (softmax − onehot)/3."""
    want = (math.log(2) + math.log(4) + math.log(4 / 3)) / 3
    assert cql_regularizer(CQL_Q, CQL_A) == pytest.approx(want, rel=1e-12)
    assert cql_regularizer(torch.tensor(CQL_Q), torch.tensor(CQL_A)).item() == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(cql_regularizer_grad(CQL_Q, CQL_A),
                               np.array([[-0.5, 0.5], [0.75, -0.75], [0.25, -0.25]]) / 3, rtol=1e-12)
    # no overflow at large Q; a row whose logged action dominates costs ~0
    assert cql_regularizer(np.array([[1000.0, 1000.0]]), np.array([1])) == pytest.approx(math.log(2))
    assert cql_regularizer(np.array([[50.0, 0.0]]), np.array([0])) == pytest.approx(0.0, abs=1e-20)


@given(st.integers(1, 16), st.integers(2, 6), st.integers(0, 10_000), st.floats(-50, 50))
def test_cql_regularizer_equals_autograd_and_its_properties(B, A, seed, shift):
    """numpy value and ``cql_regularizer_grad`` = torch value and autograd; R ≥ 0; R unchanged by
    adding a constant to a row (logsumexp and Q(s, a) move together); gradient rows sum to 0."""
    rng = np.random.default_rng(seed)
    q = rng.normal(0, 3, (B, A))
    a = rng.integers(0, A, B)
    qt = torch.tensor(q, requires_grad=True)
    r = cql_regularizer(qt, torch.tensor(a))
    r.backward()
    assert cql_regularizer(q, a) == pytest.approx(r.item(), rel=1e-12, abs=1e-12)
    g = cql_regularizer_grad(q, a)
    np.testing.assert_allclose(g, qt.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert r.item() >= 0
    assert cql_regularizer(q + shift, a) == pytest.approx(r.item(), rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-12)
    assert cql_regularizer_grad(q.astype(np.float32), a).dtype == np.float32


def test_cql_regularizer_bad_shapes():
    with pytest.raises(InputError, match="q_tm1"):
        cql_regularizer(np.zeros(3), np.zeros(3, int))
    with pytest.raises(InputError, match="q_tm1"):
        cql_regularizer(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


def test_sac_losses_hand_values():
    y = soft_q_target(torch.tensor([1.0]), 0.9, torch.tensor([2.0]), torch.tensor([-1.0]), 0.2)
    assert torch.allclose(y, torch.tensor([1 + 0.9 * (2 + 0.2)]))
    q1 = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = sac_critic_loss([q1, torch.tensor([0.0, 2.0])], torch.tensor([1.0, 1.0]))
    assert math.isclose(loss.item(), 0.75)
    loss.backward()
    assert torch.allclose(q1.grad, torch.tensor([0.0, 0.5]))
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    actor = sac_actor_loss(logp, torch.tensor([3.0, 1.0]), torch.tensor(0.5, requires_grad=True))
    assert math.isclose(actor.item(), -2.75)
    actor.backward()
    assert torch.allclose(logp.grad, torch.tensor([0.25, 0.25]))


def test_sac_temperature_loss_direction():
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    logp = torch.tensor([-1.0, -3.0], requires_grad=True)
    loss = sac_temperature_loss(log_alpha, logp, target_entropy=-1.0)
    assert math.isclose(loss.item(), -math.log(0.5) * -3.0 * -1.0 * -1.0, rel_tol=1e-6)
    loss.backward()
    assert math.isclose(log_alpha.grad.item(), 3.0)  # entropy 2 > target −1 → descent lowers α
    assert logp.grad is None


def test_polyak_update():
    t, p = [torch.zeros(2), torch.ones(1)], [torch.tensor([1.0, 2.0]), torch.tensor([5.0])]
    polyak_update(t, p, 0.25)
    assert torch.allclose(t[0], torch.tensor([0.25, 0.5])) and torch.allclose(t[1], torch.tensor([2.0]))
    polyak_update(t, p, 1.0)
    assert torch.equal(t[0], p[0])
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(InputError):
            polyak_update(t, p, bad)


@given(st.floats(-3, 3), st.floats(-2, 1), st.floats(-6, 6))
def test_tanh_gaussian_log_prob_is_change_of_variables(mu, log_std, u):
    """log π(a) = log N(u) − log|da/du| with da/du taken by central differences in float64."""
    mean, ls, uu = (torch.tensor([[x]], dtype=torch.float64) for x in (mu, log_std, u))
    got = tanh_gaussian_log_prob(mean, ls, uu).item()
    h = 1e-5
    dadu = (math.tanh(u + h) - math.tanh(u - h)) / (2 * h)
    normal = torch.distributions.Normal(mu, math.exp(log_std)).log_prob(torch.tensor(u, dtype=torch.float64))
    assert math.isclose(got, normal.item() - math.log(dadu), rel_tol=1e-6, abs_tol=1e-6)


def test_tanh_gaussian_density_integrates_to_one_and_matches_torch():
    mean, ls = torch.tensor([[0.7, -0.3]], dtype=torch.float64), torch.tensor([[-0.5, 0.2]], dtype=torch.float64)
    a = torch.linspace(-1 + 1e-9, 1 - 1e-9, 400_001, dtype=torch.float64)
    for i in range(2):
        u = torch.atanh(a)[:, None]
        logp = tanh_gaussian_log_prob(mean[:, i:i + 1].expand(len(a), 1), ls[:, i:i + 1].expand(len(a), 1), u)
        assert abs(torch.trapezoid(logp.exp(), a).item() - 1.0) < 1e-3
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, ls.exp()), [torch.distributions.TanhTransform()])
    u = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    assert torch.allclose(tanh_gaussian_log_prob(mean, ls, u), dist.log_prob(torch.tanh(u)).sum(-1))
