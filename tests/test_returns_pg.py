"""discounted_returns, td_errors, gae: hand-computed cases, truncation vs termination, properties."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab.returns import discounted_returns, gae, td_errors


def _naive_returns(r, gamma, term, trunc, v_tp1):
    """Independent reference: loop over episodes forwards, summing γ^k r explicitly."""
    T = len(r)
    G = np.zeros(T)
    for t in range(T):
        g, disc = 0.0, 1.0
        for k in range(t, T):
            g += disc * r[k]
            if term[k]:
                break
            if trunc[k] or k == T - 1:
                g += disc * gamma * v_tp1[k]
                break
            disc *= gamma
        G[t] = g
    return G


def _naive_gae(r, gamma, lam, v, v_tp1, term, trunc):
    T = len(r)
    delta = r + gamma * (1 - term) * v_tp1 - v
    A = np.zeros(T)
    for t in range(T):
        a, w = 0.0, 1.0
        for k in range(t, T):
            a += w * delta[k]
            if term[k] or trunc[k]:
                break
            w *= gamma * lam
        A[t] = a
    return A


def test_discounted_returns_hand_values():
    r = np.array([1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(discounted_returns(r, 0.5), [1.875, 1.75, 1.5, 1.0])
    # terminated after row 1: no bootstrap; a new episode starts at row 2
    term = np.array([0, 1, 0, 0], bool)
    np.testing.assert_allclose(discounted_returns(r, 0.5, terminated=term), [1.5, 1.0, 1.5, 1.0])
    # truncated after row 1: bootstrap from V(final obs)=8 there, and V(s_T)=4 at the end
    trunc = np.array([0, 1, 0, 0], bool)
    boot = np.array([0.0, 8.0, 0.0, 4.0])
    np.testing.assert_allclose(
        discounted_returns(r, 0.5, boot, truncated=trunc), [1 + 0.5 * 5, 1 + 4, 1 + 0.5 * 3, 3.0]
    )
    # the same rows marked terminated instead ignore the bootstrap values entirely
    np.testing.assert_allclose(
        discounted_returns(r, 0.5, boot, terminated=trunc), [1.5, 1.0, 2.5, 3.0]
    )
    # both flags: termination wins
    np.testing.assert_allclose(
        discounted_returns(r, 0.5, boot, terminated=trunc, truncated=trunc), [1.5, 1.0, 2.5, 3.0]
    )


def test_batch_shaped_bootstrap_and_errors():
    r = np.ones((3, 2))
    G = discounted_returns(r, 0.9, np.array([10.0, 0.0]))
    np.testing.assert_allclose(G[:, 0], [1 + 0.9 + 0.81 + 0.729 * 10, 1 + 0.9 + 0.81 * 10, 1 + 9])
    np.testing.assert_allclose(G[:, 1], [2.71, 1.9, 1.0])
    trunc = np.zeros((3, 2), bool)
    trunc[0, 1] = True
    with pytest.raises(ValueError, match="row 0 is truncated"):
        discounted_returns(r, 0.9, np.zeros(2), truncated=trunc)
    with pytest.raises(ValueError, match="v_tp1 must have shape"):
        gae(r, 0.9, r, np.zeros(3), 0.9)
    with pytest.raises(ValueError, match="terminated must have the shape"):
        td_errors(r, 0.9, r, r, terminated=np.zeros(3, bool))
    with pytest.raises(ValueError, match="r_t must have shape"):
        gae(np.ones((2, 2, 2)), 0.9, np.ones((2, 2, 2)), np.ones((2, 2)), 0.9)
    with pytest.raises(ValueError, match="lambda_"):
        gae(r, 0.9, r, r, 1.5)
    with pytest.raises(ValueError, match="discount_t"):
        td_errors(r, -0.1, r, r)


def test_td_errors_truncation_bootstraps_termination_does_not():
    r = np.array([1.0, 2.0])
    v = np.array([0.5, 0.25])
    v_tp1 = np.array([3.0, 7.0])
    np.testing.assert_allclose(td_errors(r, 0.9, v, v_tp1), [1 + 2.7 - 0.5, 2 + 6.3 - 0.25])
    np.testing.assert_allclose(
        td_errors(r, 0.9, v, v_tp1, terminated=np.array([1, 0])), [1 - 0.5, 2 + 6.3 - 0.25]
    )
    np.testing.assert_allclose(
        td_errors(r, 0.9, v, v_tp1, truncated=np.array([1, 0])), [1 + 2.7 - 0.5, 2 + 6.3 - 0.25]
    )
    # batch-shaped v_tp1 means "shift v_t": δ_0 uses V(s_1) = v[1]
    np.testing.assert_allclose(td_errors(r, 0.9, v, np.array(7.0)), [1 + 0.9 * 0.25 - 0.5, 8.05])


def test_gae_hand_values_with_truncation():
    # rows: 0 live, 1 truncated (final obs V=2), 2 terminated, 3 live (V(s_T)=1)
    r = np.array([1.0, 0.0, 1.0, 0.0])
    v = np.array([0.5, 0.5, 0.5, 0.5])
    v_tp1 = np.array([0.5, 2.0, 99.0, 1.0])
    term = np.array([0, 0, 1, 0], bool)
    trunc = np.array([0, 1, 0, 0], bool)
    g, lam = 0.5, 0.5
    d = np.array([1 + g * 0.5 - 0.5, 0 + g * 2 - 0.5, 1 - 0.5, 0 + g * 1 - 0.5])
    A = gae(r, g, v, v_tp1, lam, terminated=term, truncated=trunc)
    np.testing.assert_allclose(A, [d[0] + g * lam * d[1], d[1], d[2], d[3]])


@st.composite
def _rollouts(draw):
    T = draw(st.integers(1, 12))
    N = draw(st.integers(1, 4))
    two_d = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    shape = (T, N) if two_d else (T,)
    r = rng.normal(size=shape)
    v = rng.normal(size=shape)
    v_tp1 = rng.normal(size=shape)
    term = rng.random(shape) < draw(st.sampled_from([0.0, 0.2, 0.5]))
    trunc = rng.random(shape) < draw(st.sampled_from([0.0, 0.2]))
    # a consistent rollout: V(s_{t+1}) is the next row's V(s_t) unless the episode ended at t
    # (then it is V of the true final observation, an independent number); the last row bootstraps
    done = term | trunc
    v_tp1[:-1] = np.where(done[:-1], v_tp1[:-1], v[1:])
    gamma = draw(st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]))
    lam = draw(st.sampled_from([0.0, 0.3, 0.95, 1.0]))
    return r, v, v_tp1, term, trunc, gamma, lam


def _cols(x):
    return x if x.ndim == 2 else x[:, None]


@settings(max_examples=60, deadline=None)
@given(_rollouts())
def test_properties_gae_lambda_limits_and_reference(roll):
    r, v, v_tp1, term, trunc, gamma, lam = roll
    kw = {"terminated": term, "truncated": trunc}
    G = discounted_returns(r, gamma, v_tp1, **kw)
    delta = td_errors(r, gamma, v, v_tp1, **kw)
    # λ = 1 is Monte Carlo, λ = 0 is TD(0)
    np.testing.assert_allclose(gae(r, gamma, v, v_tp1, 1.0, **kw), G - v, atol=1e-10)
    np.testing.assert_allclose(gae(r, gamma, v, v_tp1, 0.0, **kw), delta, atol=1e-12)
    # against explicit forward sums, column by column
    A = _cols(gae(r, gamma, v, v_tp1, lam, **kw))
    for n in range(A.shape[1]):
        args = [_cols(x)[:, n] for x in (r, v, v_tp1, term, trunc)]
        np.testing.assert_allclose(A[:, n], _naive_gae(args[0], gamma, lam, *args[1:]), atol=1e-10)
        ref = _naive_returns(args[0], gamma, args[3], args[4], args[2])
        np.testing.assert_allclose(_cols(G)[:, n], ref, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(_rollouts(), st.booleans())
def test_properties_numpy_and_torch_agree(roll, grad):
    r, v, v_tp1, term, trunc, gamma, lam = roll
    kw = {"terminated": term, "truncated": trunc}
    tkw = {"terminated": torch.as_tensor(term), "truncated": torch.as_tensor(trunc)}
    rt, vt, vt1 = (torch.tensor(x, requires_grad=grad) for x in (r, v, v_tp1))
    for f, a_np, a_t in [
        (gae, (r, gamma, v, v_tp1, lam), (rt, gamma, vt, vt1, lam)),
        (td_errors, (r, gamma, v, v_tp1), (rt, gamma, vt, vt1)),
        (discounted_returns, (r, gamma, v_tp1), (rt, gamma, vt1)),
    ]:
        out = f(*a_t, **tkw)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
        assert out.requires_grad == grad
        np.testing.assert_allclose(out.detach().numpy(), f(*a_np, **kw), atol=1e-10)


def test_float32_dtype_kept_and_gae_gradient_flows_to_values():
    r = torch.ones(5, 3)
    v = torch.zeros(5, 3, requires_grad=True)
    A = gae(r, 0.9, v, torch.zeros(3), 0.8)
    assert A.dtype == torch.float32 and A.shape == (5, 3)
    A[0].sum().backward()
    # dÂ_0/dV(s_0) = −1, dÂ_0/dV(s_1) = γ − γλ = 0.9 − 0.72
    np.testing.assert_allclose(v.grad[0].numpy(), -1.0)
    np.testing.assert_allclose(v.grad[1].numpy(), 0.9 - 0.72, rtol=1e-6)
    assert gae(np.ones(4, np.float32), 0.9, np.zeros(4, np.float32), 0.0).dtype == np.float32
