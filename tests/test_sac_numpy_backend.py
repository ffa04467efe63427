"""SAC's numpy backend (deep/fast/sac.py): the SAC loss derivatives (losses/grads.py) against
autograd, and the numpy and torch backends from one seed giving the same parameters, Adam moments,
α and losses step after step; the backend choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from policylab.deep.fast.mlp import mlp_unsupported
from policylab.deep.sac import SAC
from policylab.errors import ConfigError
from policylab.losses import grads as G
from policylab.losses import value_based as V


def _t(x, grad=False):
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 30), d=st.integers(1, 4), n=st.integers(1, 3), alpha=st.floats(0.01, 3.0),
       target_entropy=st.floats(-6.0, 2.0), seed=st.integers(0, 2**31 - 1))
def test_sac_loss_grads_equal_autograd(b, d, n, alpha, target_entropy, seed):
    """Each derivative in losses.grads against autograd of its loss in float64 (log σ spanning
    wide and narrow Gaussians, u out to tanh's flat tails), and the numpy losses equal the torch ones."""
    rng = np.random.default_rng(seed)
    mean, log_std = rng.normal(0, 2, (b, d)), rng.uniform(-5, 2, (b, d))
    u = mean + np.exp(log_std) * rng.normal(size=(b, d))
    m_t, s_t, u_t = _t(mean, True), _t(log_std, True), _t(u, True)
    logp_t = V.tanh_gaussian_log_prob(m_t, s_t, u_t)
    logp_t.sum().backward()
    for ours, ref in zip(G.tanh_gaussian_log_prob_grad(mean, log_std, u), (m_t.grad, s_t.grad, u_t.grad)):
        np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-7, atol=1e-8)  # 2 tanh u vs 2 − 4σ(−2u): rounding
    logp = V.tanh_gaussian_log_prob(mean, log_std, u)
    # torch's F.softplus(x) returns x itself above x = 20 (its threshold), off by log1p(e^−x) ≤ e^−20 per
    # element (×2 in log det, summed over d); numpy's softplus is exact there
    np.testing.assert_allclose(logp, logp_t.detach().numpy(), rtol=1e-10, atol=1e-9 + 2 * d * math.exp(-20.0))

    qs, y = [rng.normal(0, 3, b) for _ in range(n)], rng.normal(0, 3, b)
    q_t = [_t(q, True) for q in qs]
    loss = V.sac_critic_loss(q_t, _t(y))
    loss.backward()
    for ours, ref in zip(G.sac_critic_loss_grad(qs, y), q_t):
        np.testing.assert_allclose(ours, ref.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert V.sac_critic_loss(qs, y) == pytest.approx(loss.item(), rel=1e-12)

    lp_t, qm_t = _t(logp, True), _t(qs[0], True)
    loss = V.sac_actor_loss(lp_t, qm_t, alpha)
    loss.backward()
    g_logp, g_q = G.sac_actor_loss_grad(logp, qs[0], alpha)
    np.testing.assert_allclose(g_logp, lp_t.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(g_q, qm_t.grad.numpy(), rtol=1e-12)
    assert V.sac_actor_loss(logp, qs[0], alpha) == pytest.approx(loss.item(), rel=1e-10, abs=1e-12)

    la_t = _t(np.log(alpha), True)
    loss = V.sac_temperature_loss(la_t, _t(logp), target_entropy)
    loss.backward()
    assert G.sac_temperature_loss_grad(np.log(alpha), logp, target_entropy) == pytest.approx(
        la_t.grad.item(), rel=1e-12, abs=1e-12)
    assert V.sac_temperature_loss(np.log(alpha), logp, target_entropy) == pytest.approx(loss.item(), rel=1e-12, abs=1e-12)
    disc = rng.uniform(0, 1, b)
    np.testing.assert_allclose(V.soft_q_target(y, disc, qs[0], logp, alpha),
                               V.soft_q_target(_t(y), _t(disc), _t(qs[0]), _t(logp), alpha).numpy(), rtol=1e-12)


def test_reparameterized_totals_match_the_docstring():
    """With u = μ + σε: d log π/dμ = 2 tanh u and d log π/dlog σ = 2σε tanh u − 1 (partials summed)."""
    rng = np.random.default_rng(0)
    mean, log_std, eps = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    u = mean + np.exp(log_std) * eps
    dm, ds, du = G.tanh_gaussian_log_prob_grad(mean, log_std, u)
    np.testing.assert_allclose(dm + du, 2 * np.tanh(u), atol=1e-12)
    np.testing.assert_allclose(ds + du * np.exp(log_std) * eps, 2 * np.exp(log_std) * eps * np.tanh(u) - 1, atol=1e-12)


def _optim_state(agent) -> dict:
    out = {}
    for name, opt in agent.optimizers.items():
        for i, st_ in opt.state_dict()["state"].items():
            out |= {f"{name}/{i}/{k}": v.numpy().copy() for k, v in st_.items()}
    return out


CASES = [  # learned α, n_critics 2 (the default); fixed α; one critic; target update every 3 steps (τ fused
    # into the critics' Adam pass); a hard copy every 5 steps (τ = 1: a separate Polyak update), three critics
    {}, {"ent_coef": 0.2}, {"n_critics": 1, "ent_coef": "auto_0.5"}, {"target_update_interval": 3, "tau": 0.05},
    {"target_update_interval": 5, "tau": 1.0, "n_critics": 3}]


@pytest.mark.parametrize("case", CASES)
def test_numpy_and_torch_backends_take_the_same_steps(case):
    """Same seed, same minibatches and the same ε from the agent's torch Generator: after each of 50
    gradient steps the losses, α and entropy estimate, and at the end every parameter (actor,
    critics, target critics, log α) and Adam moment agree to float rounding (~1e-5 relative)."""
    kw = {"learning_starts": 100, "batch_size": 64, "hidden_sizes": (32, 32), "learning_rate": 3e-3, **case}
    agents = {b: SAC("Pendulum-v1", seed=4, backend=b, **kw) for b in ("numpy", "torch")}
    assert [a.backend.name for a in agents.values()] == ["numpy", "torch"]
    for a in agents.values():
        a.learn(100)  # uniform-random warm-up: identical buffers
    rows = {b: np.array([a.gradient_step(i) for i in range(50)]) for b, a in agents.items()}  # (50, 5)
    np.testing.assert_allclose(rows["numpy"], rows["torch"], rtol=1e-5, atol=1e-6, equal_nan=True)
    if case.get("ent_coef") == 0.2:  # fixed α: no temperature loss
        assert np.isnan(rows["numpy"][:, 4]).all() and np.allclose(rows["numpy"][:, 3], 0.2, rtol=1e-6)
    else:
        assert rows["numpy"][-1, 3] != rows["numpy"][0, 3]  # α moved
    sd = {b: a.net.state_dict() for b, a in agents.items()}
    for k in sd["torch"]:
        np.testing.assert_allclose(sd["numpy"][k].numpy(), sd["torch"][k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    opt = {b: _optim_state(a) for b, a in agents.items()}
    fixed_alpha = case.get("ent_coef") == 0.2
    assert opt["numpy"].keys() == opt["torch"].keys() and len(opt["torch"]) == (6 if fixed_alpha else 9)
    for k, ref in opt["torch"].items():  # moments near 0 carry the rounding of the sums that made them
        np.testing.assert_allclose(opt["numpy"][k], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(), err_msg=k)


def test_backends_agree_through_learn():
    """The whole loop (exploration through the numpy actor, updates, target updates): after 150 env
    steps with 60 gradient steps the parameters still agree to ~1e-5."""
    kw = {"learning_starts": 90, "batch_size": 32, "hidden_sizes": (16, 16), "train_freq": 2, "gradient_steps": 2}
    agents = [SAC("Pendulum-v1", seed=1, backend=b, **kw).learn(150) for b in ("numpy", "torch")]
    for k, v in agents[1].net.state_dict().items():
        np.testing.assert_allclose(agents[0].net.state_dict()[k].numpy(), v.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(agents[0].act(obs), agents[1].act(obs), atol=1e-5)


def test_backend_choice_and_reasons():
    agent = SAC("Pendulum-v1", hidden_sizes=(8,))
    assert agent.backend.name == "numpy" and "SAC backend: numpy (auto: MLP on CPU)" in agent.notes
    assert SAC("Pendulum-v1", hidden_sizes=(8,), backend="torch").backend.name == "torch"
    with pytest.raises(ConfigError, match="backend"):
        SAC("Pendulum-v1", backend="jax")
    assert mlp_unsupported("relu", nn.Sequential(nn.Linear(3, 4), nn.ReLU())) is None
    assert "layers other than" in mlp_unsupported("relu", nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)))
    assert "float32" in mlp_unsupported("tanh", nn.Sequential(nn.Linear(3, 4).double()))
    assert "activation" in mlp_unsupported("gelu", nn.Sequential(nn.Linear(3, 4)))


def test_replaced_buffers_are_detected():
    agent = SAC("Pendulum-v1", hidden_sizes=(8,), learning_starts=10, batch_size=8).learn(12)
    agent.optimizers["critic"].zero_grad(set_to_none=True)  # cuts the mirror's gradient views
    with pytest.raises(RuntimeError, match="replaced"):
        agent.learn(14)


def test_divergence_check_sums_whole_buffers_and_still_names_the_tensor():
    """The guard's quick path sums each flat buffer once; a finite value whose sum overflows goes to
    the exact check (no error), a NaN anywhere is still named by its parameter."""
    from policylab.deep.guards import check_finite
    from policylab.errors import DivergenceError

    agent = SAC("Pendulum-v1", hidden_sizes=(8,))
    check_finite(agent, {})
    with torch.no_grad():
        agent.net.critics_target[1][2].weight[0, 3:5] = 3e38  # finite, but the buffer's sum is inf
    check_finite(agent, {})
    with torch.no_grad():
        agent.net.critics_target[1][2].bias[0] = float("nan")
    with pytest.raises(DivergenceError, match=r"parameter critics_target\.1\.2\.bias is NaN/inf"):
        check_finite(agent, {})


def test_adam_pass_sums_feed_the_divergence_guard():
    """The numpy step's Adam passes sum every buffer they write last (g, θ, the fused θ⁻, log α):
    those sums equal the buffers' own, the learn loop hands them to its own iteration's check only,
    a NaN among them sends the guard to its exact check (which then finds nothing here), and a NaN
    parameter reaching the step is still named."""
    from policylab.deep.guards import check_finite
    from policylab.errors import DivergenceError

    agent = SAC("Pendulum-v1", seed=0, hidden_sizes=(8,), learning_starts=10, batch_size=8).learn(12)
    flat, log_alpha = agent.flat, agent.net.log_ent_coef
    tensors = [flat["actor"], flat["actor"].grad, flat["critics"], flat["critics"].grad, flat["critics_target"],
               log_alpha, log_alpha.grad]
    sums = agent.backend.sums
    assert set(sums) == {(t.data_ptr(), t.numel()) for t in tensors}
    for t in tensors:
        assert float(sums[(t.data_ptr(), t.numel())]) == pytest.approx(t.detach().double().sum().item(), rel=1e-4,
                                                                        abs=1e-5)
    assert "_finite_sums" not in agent.__dict__  # consumed by the check of the iteration that made them
    check_finite(agent, {}, {(flat["critics"].data_ptr(), flat["critics"].numel()): float("nan")})  # exact: all finite
    with torch.no_grad():
        agent.net.critics[1][2].bias[0] = float("inf")
    with pytest.raises(DivergenceError, match="NaN/inf"):
        agent.learn(14)
