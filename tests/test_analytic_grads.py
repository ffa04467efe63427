"""PPO's backend="numpy": every hand-written derivative against torch autograd on the torch losses.

References are independent: autograd of ``policylab.losses`` / the heads / ``PolicyValueNet`` (the
torch backend), ``torch.optim.Adam`` and ``torch.nn.utils.clip_grad_norm_``, float64 ``np.tanh``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab.deep import PPO
from policylab.deep.analytic import (
    ACTIVATION_CODES,
    _layer_backward,
    _layer_forward,
    adam_step,
    clip_grad_norm,
)
from policylab.deep.distributions import CategoricalHead, GaussianHead
from policylab.losses import ppo_clip_loss, value_loss
from policylab.losses.grads import ppo_clip_loss_grad, value_loss_grad

SMALL = {"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 2, "hidden_sizes": (16, 16)}


def _autograd(fn, x: np.ndarray, *rest) -> np.ndarray:
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    fn(t, *[torch.tensor(r, dtype=torch.float64) if isinstance(r, np.ndarray) else r for r in rest]).backward()
    return t.grad.numpy()


# ---------------------------------------------------------------- loss derivatives

@settings(max_examples=60)
@given(n=st.integers(1, 40), eps=st.floats(0.05, 0.5), seed=st.integers(0, 2**31 - 1))
def test_ppo_clip_loss_grad_equals_autograd(n, eps, seed):
    rng = np.random.default_rng(seed)
    logp, old_logp = rng.normal(size=n) * 0.3, rng.normal(size=n) * 0.3
    adv = rng.normal(size=n)
    adv[rng.random(n) < 0.1] = 0.0
    edge = rng.random(n) < 0.2  # ratios exactly on the clip boundaries: the tie rule matters there
    logp[edge] = old_logp[edge] + np.log(np.where(rng.random(edge.sum()) < 0.5, 1 + eps, 1 - eps))
    ours = ppo_clip_loss_grad(logp, old_logp, adv, eps)
    ref = _autograd(ppo_clip_loss, logp, old_logp, adv, eps)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


def test_ppo_clip_loss_grad_zero_exactly_where_clip_binds():
    old = np.zeros(4)
    logp = np.log([1.5, 0.5, 1.5, 0.5])  # ρ = 1.5, 0.5, 1.5, 0.5 with ε = 0.2
    adv = np.array([1.0, -1.0, -1.0, 1.0])  # binds, binds, free, free
    g = ppo_clip_loss_grad(logp, old, adv, 0.2)
    np.testing.assert_array_equal(g[:2], 0.0)
    np.testing.assert_allclose(g[2:], [1.5 / 4, -0.5 / 4])


@settings(max_examples=60)
@given(n=st.integers(1, 40), clipped=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_value_loss_grad_equals_autograd(n, clipped, seed):
    rng = np.random.default_rng(seed)
    v, ret, old = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    eps = 0.2 if clipped else None
    if clipped:  # exact ties of the two squared errors and values on the clip edge
        tie = rng.random(n) < 0.2
        v[tie] = old[tie] + 0.5
        ret[tie] = (v[tie] + old[tie] + 0.2) / 2  # |v − R| = |old + 0.2 − R|
        edge = rng.random(n) < 0.1
        v[edge] = old[edge] + 0.2
    ours = value_loss_grad(v, ret, old if clipped else None, eps)
    ref = _autograd(value_loss, v, ret, old if clipped else None, eps)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- heads

@pytest.mark.parametrize("head", [CategoricalHead(4), GaussianHead(3)])
def test_head_numpy_forward_and_backward_equal_torch(head):
    rng = np.random.default_rng(0)
    B = 50
    if head.discrete:
        params = (rng.normal(size=(B, 4)) * 3,)
        actions = rng.integers(0, 4, size=B)
    else:
        params = (rng.normal(size=(B, 3)), rng.normal(size=3) * 0.5)
        actions = rng.normal(size=(B, 3))
    g_logp, g_ent = rng.normal(size=B), rng.normal(size=B)
    tp = [torch.tensor(p, requires_grad=True) for p in params]
    logp, ent = head.log_prob_entropy(tp[0] if head.discrete else tuple(tp), torch.tensor(actions))
    ((logp * torch.tensor(g_logp)).sum() + (ent * torch.tensor(g_ent)).sum()).backward()
    np_params = params[0] if head.discrete else params
    n_logp, n_ent, cache = head.np_log_prob_entropy(np_params, actions)
    np.testing.assert_allclose(n_logp, logp.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(n_ent, ent.detach().numpy(), rtol=1e-12)
    grads = head.np_backward(cache, actions, g_logp, g_ent)
    grads = (grads,) if head.discrete else grads
    for ours, t in zip(grads, tp):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("head", [CategoricalHead(3), GaussianHead(2)])
def test_head_numpy_sampling_follows_the_distribution(head):
    rng = np.random.default_rng(3)
    if head.discrete:
        logits = np.log(np.array([[0.2, 0.5, 0.3]], dtype=np.float32)).repeat(40_000, 0)
        freq = np.bincount(head.np_sample(logits, rng), minlength=3) / 40_000
        np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.01)
    else:
        mean = np.tile(np.array([[1.0, -2.0]], dtype=np.float32), (40_000, 1))
        a = head.np_sample((mean, np.log(np.array([0.5, 2.0], dtype=np.float32))), rng)
        np.testing.assert_allclose(a.mean(0), [1.0, -2.0], atol=0.03)
        np.testing.assert_allclose(a.std(0), [0.5, 2.0], rtol=0.02)


# ---------------------------------------------------------------- activation, clipping, Adam

def test_fast_tanh_layer_within_5_ulp_and_its_derivative():
    x = np.concatenate([np.linspace(-12, 12, 20_001), [0.0, -0.0, 1e-30, -1e-8, 7.9, 7.91, 100.0]])
    x = x.reshape(-1, 1).astype(np.float32)
    W = np.ones((3, 1), dtype=np.float32)  # a = x Wᵀ + b: three shifted copies of x
    b = np.array([0.0, 0.5, -0.25], dtype=np.float32)
    exact = np.tanh(x.astype(np.float64) + b.astype(np.float64))
    ours = _layer_forward(x, W, b, ACTIVATION_CODES["tanh"])
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(ours - exact) <= 5 * ulp + 1e-30)
    assert np.all(np.abs(ours) <= 1.0)
    # backward through it with W = I: (g I) ⊙ (1 − h²); gW = gᵀh, gb = Σ g
    g = np.random.default_rng(0).normal(size=ours.shape).astype(np.float32)
    gW, gb = np.zeros((3, 3), np.float32), np.zeros(3, np.float32)
    gp = _layer_backward(g, ours, np.eye(3, dtype=np.float32), gW, gb, ACTIVATION_CODES["tanh"])
    np.testing.assert_allclose(gp, g * (1 - ours.astype(np.float64) ** 2), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gW, g.T.astype(np.float64) @ ours, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(gb, g.sum(0), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("scale", [1e-3, 10.0])
def test_clip_grad_norm_equals_torch(scale):
    g = (np.random.default_rng(1).normal(size=1000) * scale).astype(np.float32)
    t = torch.nn.Parameter(torch.zeros(1000))
    t.grad = torch.tensor(g)
    ref_norm = torch.nn.utils.clip_grad_norm_([t], 0.5)
    norm = clip_grad_norm(g, 0.5)
    assert norm == pytest.approx(float(ref_norm), rel=1e-6)
    np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-6)


def test_adam_step_equals_torch_adam():
    rng = np.random.default_rng(2)
    p1 = torch.nn.Parameter(torch.tensor(rng.normal(size=500).astype(np.float32)))
    p2 = torch.nn.Parameter(p1.detach().clone())
    o1 = torch.optim.Adam([p1], lr=3e-3, eps=1e-5)
    o2 = torch.optim.Adam([p2], lr=3e-3, eps=1e-5, fused=True)
    for k in range(30):
        g = torch.tensor(rng.normal(size=500).astype(np.float32))
        p1.grad, p2.grad = g.clone(), g.clone()
        o2.param_groups[0]["lr"] = o1.param_groups[0]["lr"] = 3e-3 * (1 - k / 30)  # annealed, as PPO does
        o1.step()
        adam_step(o2, p2)
    torch.testing.assert_close(p2.detach(), p1.detach(), rtol=1e-5, atol=1e-6)
    s1, s2 = o1.state[p1], o2.state[p2]
    assert float(s2["step"]) == float(s1["step"]) == 30
    torch.testing.assert_close(s2["exp_avg_sq"], s1["exp_avg_sq"], rtol=1e-5, atol=1e-9)
    o2.state_dict()  # still a valid torch optimizer state (checkpoints)


# ---------------------------------------------------------------- the whole PPO gradient

@pytest.mark.parametrize("env,hp", [
    ("CartPole-v1", {}),
    ("CartPole-v1", {"activation": "relu", "ent_coef": 0.01, "clip_range_vf": 0.1, "vf_coef": 0.5}),
    ("Acrobot-v1", {"activation": "elu", "hidden_sizes": (32, 16, 8)}),
    ("Pendulum-v1", {"ent_coef": 0.02, "clip_range_vf": 0.2, "log_std_init": -0.5}),
])
def test_numpy_backend_gradient_equals_autograd(env, hp):
    """Same weights, same minibatch: the numpy backend's flat gradient = autograd's on the torch loss."""
    agent = PPO(env, seed=0, backend="numpy", **{**SMALL, **hp})
    agent.learn(64)  # a rollout + a few updates: non-trivial ratios, some clipped
    buf = agent.buf
    agent.collect_rollout(buf)
    rng = np.random.default_rng(0)
    for v in agent.net.state_dict().values():  # perturb so ratios ≠ 1 and clipping binds somewhere
        v += torch.tensor(rng.normal(size=v.shape).astype(np.float32)) * 0.25
    adv = rng.normal(size=buf.rewards.size).astype(np.float32)
    batch = (buf.flat("obs"), buf.flat("actions"), buf.flat("logp"), adv,
             rng.normal(size=adv.size).astype(np.float32), buf.flat("values"))
    out_np = agent._numpy_backward(batch, 0.2)
    g_np = agent.flat_grad.copy()
    out_t = agent._torch_backward(batch, 0.2)
    g_t = agent.flat_grad.copy()
    for a, b in zip(out_np, out_t):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-6)
    ratio = torch.exp(out_t[0] - torch.from_numpy(batch[2]))
    assert ((ratio - 1).abs() > 0.2).any() and ((ratio - 1).abs() < 0.2).any()  # both regions exercised
    assert np.abs(g_t).max() > 0
    np.testing.assert_allclose(g_np, g_t, rtol=1e-3, atol=2e-5 * np.abs(g_t).max())
    assert np.linalg.norm(g_np - g_t) <= 1e-4 * np.linalg.norm(g_t)


def test_numpy_backend_logged_losses_use_the_torch_loss_functions():
    agent = PPO("CartPole-v1", seed=1, backend="numpy", **SMALL)
    rows = []
    agent.learn(128, callback=lambda ag, m: rows.append(m))
    for m in rows:
        assert m["losses/value_loss"] > 0 and 0 <= m["losses/clip_fraction"] <= 1
        assert m["losses/entropy"] == pytest.approx(np.log(2), abs=0.05)  # near-uniform policy early on


def test_numpy_backend_checkpoint_resume_identical(tmp_path):
    hp = {**SMALL, "anneal_lr": True, "anneal_clip": True, "target_kl": 0.05}
    full = PPO("CartPole-v1", seed=4, backend="numpy", **hp).learn(512)
    half = PPO("CartPole-v1", seed=4, backend="numpy", **hp)
    half.learn(512, callback=lambda ag, m: ag.num_steps < 256)
    half.save(tmp_path / "run")
    resumed = PPO.load(tmp_path / "run").learn(512)
    assert resumed.config.backend == "numpy"
    for p, q in zip(full.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(p, q)
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_array_equal(full.act(obs), resumed.act(obs))
    # the same checkpoint continues under the torch backend too (same weights and Adam state)
    torch_agent = PPO("CartPole-v1", seed=4, config={**resumed.config.__dict__, "backend": "torch"})
    torch_agent.net.load_state_dict(resumed.net.state_dict())
    np.testing.assert_array_equal(torch_agent.act(obs), resumed.act(obs))


def test_bad_backend_rejected_before_work():
    with pytest.raises(ValueError, match="backend"):
        PPO("CartPole-v1", backend="jax", **SMALL)


@settings(max_examples=25, deadline=None)
@given(obs_dim=st.integers(1, 9), hidden=st.lists(st.integers(1, 33), min_size=1, max_size=3),
       out_dim=st.integers(1, 5), batch=st.integers(1, 70), activation=st.sampled_from(["tanh", "relu", "elu"]),
       seed=st.integers(0, 2**31 - 1))
def test_numpy_mlp_backward_equals_autograd_any_shape(obs_dim, hidden, out_dim, batch, activation, seed):
    """The MLP chain rule alone: ∂(Σ out ⊙ G)/∂θ for random shapes, activations and upstream G."""
    from policylab.deep.analytic import NumpyMLP
    from policylab.deep.networks import flatten_parameters, mlp

    torch.manual_seed(seed % 10_000)
    net = mlp(obs_dim, hidden, out_dim, activation, out_gain=1.0)
    for p in net.parameters():  # non-zero biases, so the bias path is exercised
        torch.nn.init.normal_(p, std=0.5)
    flat = flatten_parameters(net)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, obs_dim)).astype(np.float32)
    G = rng.normal(size=(batch, out_dim)).astype(np.float32)
    mirror = NumpyMLP(net, activation)
    out, cache = mirror.forward(x)
    mirror.backward(G, cache)
    g_np = flat.grad.numpy().copy()
    flat.grad.zero_()
    ref_out = net(torch.from_numpy(x))
    (ref_out * torch.from_numpy(G)).sum().backward()
    np.testing.assert_allclose(out, ref_out.detach().numpy(), rtol=1e-5, atol=1e-5)
    g_ref = flat.grad.numpy()
    assert np.linalg.norm(g_np - g_ref) <= 1e-5 * max(np.linalg.norm(g_ref), 1.0)


_THREADS_SCRIPT = """
import hashlib, sys
import numpy as np
from policylab.deep import PPO
from policylab.deep.envs import VectorCartPole
agent = PPO(VectorCartPole(8), seed=2, n_envs=8, n_steps=32, batch_size=256, n_epochs=5)
agent.learn(1024)
print(hashlib.sha256(agent.flat_params.detach().numpy().tobytes()).hexdigest())
"""


def test_numpy_backend_numbers_do_not_depend_on_blas_threads():
    """The numba kernels' products run in OpenBLAS, whose float32 sums depend on its thread count:
    the agent pins BLAS to one thread (as torch), so a seed gives the same weights on any machine."""
    import os
    import subprocess
    import sys

    digests = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], env=env, capture_output=True, text=True,
                             check=True, timeout=300)
        digests.append(out.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]


def test_ppo_clip_loss_grad_float32_rounding_ties_as_torch():
    """Ratios one float32 step around 1±ε: the rounded products may tie; torch then splits the gradient."""
    rng = np.random.default_rng(5)
    n, eps = 4000, 0.2
    old = rng.normal(size=n).astype(np.float32)
    edge = np.float32(1 + eps) * (1 + rng.integers(-3, 4, size=n).astype(np.float32) * np.finfo(np.float32).eps)
    logp = (old + np.log(edge.astype(np.float64))).astype(np.float32)
    adv = rng.normal(size=n).astype(np.float32)
    t = torch.tensor(logp, requires_grad=True)
    ppo_clip_loss(t, torch.tensor(old), torch.tensor(adv), eps).backward()
    ours = ppo_clip_loss_grad(logp, old, adv, eps)
    ratio = np.exp(logp - old)
    same_ratio = ratio == torch.exp(torch.tensor(logp) - torch.tensor(old)).numpy()
    assert same_ratio.mean() > 0.5  # where numpy's and torch's exp agree, the rule must agree exactly
    ties = ratio * adv == np.clip(ratio, 1 - eps, 1 + eps) * adv
    assert (ties & same_ratio & (ratio != np.float32(1 + eps))).any()  # rounding ties off the boundary
    np.testing.assert_allclose(ours[same_ratio], t.grad.numpy()[same_ratio], rtol=1e-6, atol=1e-12)


def test_replaced_buffers_detected_and_old_checkpoints_keep_their_backend(tmp_path):
    import json

    for backend in ("numpy", "torch"):
        agent = PPO("CartPole-v1", seed=0, backend=backend, **SMALL)
        agent.learn(64)
        agent.optimizers["main"].zero_grad()  # set_to_none=True: the flat gradient buffer is gone
        with pytest.raises(RuntimeError, match="buffers were replaced"):
            agent.learn(128)
    agent = PPO("CartPole-v1", seed=0, **SMALL)
    w = agent.net.actor[0].weight
    agent.net.load_state_dict({**agent.net.state_dict(), "actor.0.weight": w.detach().clone()}, assign=True)
    with pytest.raises(RuntimeError, match="buffers were replaced"):
        agent.learn(64)
    # a checkpoint written before `backend` existed resumes on the backend it was trained with
    PPO("CartPole-v1", seed=0, backend="torch", **SMALL).learn(64).save(tmp_path / "old")
    meta_path = tmp_path / "old" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["backend"]
    meta["format"] = "policylab-checkpoint-v1"  # old files had no meta_sha256 over the JSON
    del meta["meta_sha256"]
    meta_path.write_text(json.dumps(meta))
    assert PPO.load(tmp_path / "old").config.backend == "torch"
