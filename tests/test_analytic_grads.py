"""PPO's numpy backend (policylab.deep.fast): every hand-written derivative against torch autograd.

References are independent: autograd of ``policylab.losses`` / the heads / ``PolicyValueNet`` (the
torch backend), ``torch.optim.Adam`` and ``torch.nn.utils.clip_grad_norm_``, float64 ``np.tanh``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from policylab.deep import PPO
from policylab.deep.distributions import CategoricalHead, GaussianHead
from policylab.deep.fast.heads import numpy_head
from policylab.deep.fast.mlp import ACTIVATION_CODES, _layer_backward, _layer_forward
from policylab.deep.fast.optim import adam_step
from policylab.deep.networks import clip_grad_norm
from policylab.losses import ppo_clip_loss, ppo_loss, value_loss
from policylab.losses.grads import ppo_clip_loss_grad, ppo_loss_grad, value_loss_grad

SMALL = {"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 2, "hidden_sizes": (16, 16)}


def _autograd(fn, x: np.ndarray, *rest) -> np.ndarray:
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    fn(t, *[torch.tensor(r, dtype=torch.float64) if isinstance(r, np.ndarray) else r for r in rest]).backward()
    return t.grad.numpy()


# ---------------------------------------------------------------- loss derivatives

def _assert_grad_or_one_sided_at_kinks(ours, ref, ratio, adv, eps, rtol, atol, ulps=4):
    """ours ≈ ref away from the clip boundaries; within ``ulps`` ulp of ρ = 1±ε (where the rounding
    of ``exp`` decides the branch and differs between CPUs and libms) each of ours and ref may be any
    value between the two one-sided derivatives there: 0 (clip binds) and −ρÂ/B (clip free)."""
    ulp = np.spacing(np.asarray(1.0 + eps, dtype=np.asarray(ratio).dtype)).astype(np.float64)  # ρ's own precision
    ratio = np.asarray(ratio, dtype=np.float64)
    near = np.zeros(ratio.shape, dtype=bool)
    for edge in (1.0 + eps, 1.0 - eps):
        near |= np.abs(ratio - edge) <= ulps * ulp
    np.testing.assert_allclose(ours[~near], ref[~near], rtol=rtol, atol=atol)
    free = -ratio[near] * adv[near] / ratio.size  # the one-sided derivative where the clip is free
    lo, hi = np.minimum(free, 0.0), np.maximum(free, 0.0)
    slack = rtol * np.abs(free) + atol
    for g in (ours[near], ref[near]):
        assert np.all((g >= lo - slack) & (g <= hi + slack)), (g, lo, hi)


@settings(max_examples=60)
@given(n=st.integers(1, 40), eps=st.floats(0.05, 0.5), seed=st.integers(0, 2**31 - 1))
def test_ppo_clip_loss_grad_equals_autograd(n, eps, seed):
    rng = np.random.default_rng(seed)
    logp, old_logp = rng.normal(size=n) * 0.3, rng.normal(size=n) * 0.3
    adv = rng.normal(size=n)
    adv[rng.random(n) < 0.1] = 0.0
    edge = rng.random(n) < 0.2  # ratios on the clip boundaries (up to exp's rounding on this CPU)
    logp[edge] = old_logp[edge] + np.log(np.where(rng.random(edge.sum()) < 0.5, 1 + eps, 1 - eps))
    ours = ppo_clip_loss_grad(logp, old_logp, adv, eps)
    ref = _autograd(ppo_clip_loss, logp, old_logp, adv, eps)
    _assert_grad_or_one_sided_at_kinks(ours, ref, np.exp(logp - old_logp), adv, eps, rtol=1e-10, atol=1e-12)


def test_kink_check_rejects_a_wrong_gradient():
    """The tolerance at the kinks is not a blank cheque: a wrong derivative away from them, or a value
    outside [0, −ρÂ/B] on them, still fails."""
    ratio, adv = np.array([1.0, 1.2, 0.8]), np.array([1.0, 1.0, -1.0])
    right = -ratio * adv / 3
    _assert_grad_or_one_sided_at_kinks(right, right * [1, 0, 0], ratio, adv, 0.2, 1e-10, 1e-12)
    with pytest.raises(AssertionError):
        _assert_grad_or_one_sided_at_kinks(right * [2, 1, 1], right, ratio, adv, 0.2, 1e-10, 1e-12)
    with pytest.raises(AssertionError):
        _assert_grad_or_one_sided_at_kinks(right * [1, -1, 1], right, ratio, adv, 0.2, 1e-10, 1e-12)


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
    n_head = numpy_head(head)
    n_logp, n_ent, cache = n_head.log_prob_entropy(np_params, actions)
    np.testing.assert_allclose(n_logp, logp.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(n_ent, ent.detach().numpy(), rtol=1e-12)
    grads = n_head.backward(cache, actions, g_logp, g_ent)
    grads = (grads,) if head.discrete else grads
    for ours, t in zip(grads, tp):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("head", [CategoricalHead(3), GaussianHead(2)])
def test_head_numpy_sampling_follows_the_distribution(head):
    rng = np.random.default_rng(3)
    if head.discrete:
        logits = np.log(np.array([[0.2, 0.5, 0.3]], dtype=np.float32)).repeat(40_000, 0)
        freq = np.bincount(numpy_head(head).sample(logits, rng), minlength=3) / 40_000
        np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.01)
    else:
        mean = np.tile(np.array([[1.0, -2.0]], dtype=np.float32), (40_000, 1))
        a = numpy_head(head).sample((mean, np.log(np.array([0.5, 2.0], dtype=np.float32))), rng)
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
def _both_backends_on_one_minibatch(agent, seed=0, clip_eps=0.2):
    """Perturb the weights, then one minibatch through agent.backend and through autograd (a
    TorchBackend on the same net) with PPO's own loss: (outputs, flat grad) of each."""
    from policylab.deep.backend import TorchBackend

    buf = agent.storage
    if agent._obs is None:
        agent._obs = agent._reset_env()
    agent.collect_rollout(buf)
    rng = np.random.default_rng(seed)
    for v in agent.net.state_dict().values():  # perturb so ratios ≠ 1 and clipping binds somewhere
        v += torch.tensor(rng.normal(size=v.shape).astype(np.float32)) * 0.25
    adv = rng.normal(size=buf.rewards.size).astype(np.float32)
    consts = {"old_logp": buf.flat("logp"), "advantages": adv, "returns": rng.normal(size=adv.size).astype(np.float32),
              "old_values": buf.flat("values"), "clip_eps": clip_eps}
    ref = TorchBackend(agent.net, agent.head, agent.torch_rng, agent.flat_params, agent.optimizers["main"])
    out = []
    for backend in (agent.backend, ref):
        terms, *outputs = backend.loss_and_grad(buf.flat("obs"), buf.flat("actions"), agent.loss, **consts)
        out.append(([float(t) for t in terms], outputs, agent.flat_params.grad.numpy().copy()))
    return out, consts


def _assert_same_gradient(mine, ref):
    (terms, outputs, g), (terms_t, outputs_t, g_t) = mine, ref
    for a, b in zip(outputs, outputs_t):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(terms, terms_t, rtol=1e-4, atol=1e-6)  # the logged loss = the torch loss
    assert np.abs(g_t).max() > 0
    np.testing.assert_allclose(g, g_t, rtol=1e-3, atol=2e-5 * np.abs(g_t).max())
    assert np.linalg.norm(g - g_t) <= 1e-4 * np.linalg.norm(g_t)


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
    (mine, ref), consts = _both_backends_on_one_minibatch(agent)
    ratio = np.exp(ref[1][0] - consts["old_logp"])
    assert (np.abs(ratio - 1) > 0.2).any() and (np.abs(ratio - 1) < 0.2).any()  # both regions exercised
    _assert_same_gradient(mine, ref)


# ---------------------------------------------------------------- backend="auto" over every PPO option

def _ppo_field_strategies():
    """A strategy per PPOConfig field: named ones for sizes, generic ones by type for the rest — so a
    new option that enters the loss is exercised here without anyone listing it."""
    import dataclasses
    import typing

    from policylab.deep.networks import ACTIVATIONS
    from policylab.deep.ppo import PPOConfig

    named = {"n_envs": st.integers(1, 2), "n_steps": st.integers(8, 24), "batch_size": st.integers(2, 8),
             "n_epochs": st.integers(1, 2), "hidden_sizes": st.lists(st.integers(1, 12), min_size=1, max_size=3),
             "activation": st.sampled_from(sorted(ACTIVATIONS)), "backend": st.just("auto"),
             "gamma": st.floats(0.0, 1.0), "gae_lambda": st.floats(0.0, 1.0),
             "vectorization": st.just("sync")}  # async/fast: the same numbers (tests/test_continuous.py)
    by_type = {bool: st.booleans(), int: st.integers(1, 4), float: st.floats(1e-3, 2.0),
               float | None: st.none() | st.floats(1e-3, 1.0), int | None: st.none() | st.integers(1, 4)}
    hints = typing.get_type_hints(PPOConfig)
    out = {}
    for f in dataclasses.fields(PPOConfig):
        strategy = named.get(f.name, by_type.get(hints[f.name]))
        assert strategy is not None, (f"PPOConfig.{f.name} ({hints[f.name]}): give it a strategy here, so the "
                                      "auto backend and the fast path's gradient are tested with it")
        out[f.name] = strategy
    return st.fixed_dictionaries(out)


@settings(max_examples=30, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: slow
@given(cfg=_ppo_field_strategies(), env=st.sampled_from(["CartPole-v1", "Pendulum-v1"]), seed=st.integers(0, 99))
def test_auto_backend_over_every_ppo_option_takes_numpy_only_with_the_same_gradient(cfg, env, seed):
    """For any valid PPOConfig: auto picks numpy exactly when ``fast.unsupported`` finds nothing, and
    then its loss and gradient equal autograd's on the torch loss. A new loss term or option without a
    derivative on the fast path fails here (a gradient mismatch) until it gets one or auto skips it."""
    from hypothesis import reject

    from policylab.deep import fast
    from policylab.errors import InputError

    try:
        agent = PPO(env, seed=seed, **cfg)
    except InputError:  # a value out of its range: not a config PPO runs
        reject()
    why_not = fast.unsupported(agent.net, agent.head, agent.config.activation, agent.loss)
    assert (agent.backend.name == "numpy") == (why_not is None), why_not
    assert agent.notes == [f"PPO backend: {agent.backend.name} (auto: "
                           + (why_not or "MLP on CPU, a supported head and loss") + ")"]
    if agent.backend.name == "numpy":
        (mine, ref), _ = _both_backends_on_one_minibatch(agent, seed=seed, clip_eps=agent.config.clip_range)
        _assert_same_gradient(mine, ref)


def test_auto_backend_choices_and_reasons():
    from functools import partial

    from policylab.deep.backend import make_backend
    from policylab.errors import ConfigError
    from policylab.losses import reinforce_loss

    agent = PPO("CartPole-v1", seed=0, **SMALL)  # the default: auto → numpy on a plain MLP
    assert agent.config.backend == "auto" and agent.backend.name == "numpy"
    assert PPO("CartPole-v1", seed=0, backend="torch", **SMALL).backend.name == "torch"

    class LayerNormPPO(PPO):  # another architecture: autograd only
        def build_net(self):
            net = super().build_net()
            net.actor.insert(1, torch.nn.LayerNorm(net.actor[0].out_features))
            return net

    auto = LayerNormPPO("CartPole-v1", seed=0, **SMALL)
    assert auto.backend.name == "torch" and "layers other than Linear" in auto.notes[0]
    auto.learn(64)
    with pytest.raises(ConfigError, match="backend='numpy' cannot run"):
        LayerNormPPO("CartPole-v1", seed=0, backend="numpy", **SMALL)
    # a loss with no derivative in losses.grads, or an option its derivative does not take
    args = (agent.net, agent.head, "tanh", agent.torch_rng, agent.np_rng, agent.flat_params, agent.optimizers["main"])
    backend, why = make_backend("auto", *args, partial(reinforce_loss))
    assert backend.name == "torch" and "reinforce_loss has no derivative" in why
    backend, why = make_backend("auto", *args, partial(ppo_loss, kl_coef=0.1))
    assert backend.name == "torch" and "does not take the loss's options" in why


def test_ppo_loss_grad_equals_autograd_of_ppo_loss():
    rng = np.random.default_rng(7)
    B = 50
    logp, ent, v, old, adv, ret, old_v = (rng.normal(size=B) for _ in range(7))
    kw = {"clip_eps": 0.2, "vf_coef": 0.7, "ent_coef": 0.05, "old_values": old_v, "clip_eps_vf": 0.3}
    g_logp, g_ent, g_v = ppo_loss_grad(logp, ent, v, old, adv, ret, **kw)
    ts = [torch.tensor(x, requires_grad=True) for x in (logp, ent, v)]
    kw_t = {**kw, "old_values": torch.tensor(old_v)}
    terms = ppo_loss(*ts, *(torch.tensor(x) for x in (old, adv, ret)), **kw_t)
    terms.total.backward()
    for ours, t in zip((g_logp, g_ent, g_v), ts):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-10, atol=1e-14)
    np_terms = ppo_loss(logp, ent, v, old, adv, ret, **kw)  # the numpy evaluation = the torch one
    np.testing.assert_allclose([float(t) for t in np_terms], [t.item() for t in terms], rtol=1e-12)
    assert float(np_terms.total) == pytest.approx(
        float(np_terms.policy) + 0.7 * float(np_terms.value) + 0.05 * float(np_terms.entropy), rel=1e-12)


def test_numpy_backend_logged_losses_are_sane():
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
    """The MLP chain rule alone: ∂(Σ out ⊙ G)/∂θ and ∂/∂x (``input_grad``, no weight gradients, on
    the whole batch and on a subset of its rows) for random shapes, activations and upstream G."""
    from policylab.deep.fast.mlp import NumpyMLP
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
    gx_np = mirror.input_grad(G, cache)
    np.testing.assert_array_equal(flat.grad.numpy(), g_np)  # input_grad left the weight gradients alone
    rows = np.flatnonzero(rng.random(batch) < 0.5)  # a subset of the batch (maybe none): those rows only
    np.testing.assert_allclose(mirror.input_grad(G[rows], cache, rows), gx_np[rows], rtol=1e-5, atol=1e-6)
    flat.grad.zero_()
    x_t = torch.from_numpy(x).requires_grad_()
    ref_out = net(x_t)
    (ref_out * torch.from_numpy(G)).sum().backward()
    np.testing.assert_allclose(out, ref_out.detach().numpy(), rtol=1e-5, atol=1e-5)
    assert np.linalg.norm(gx_np - x_t.grad.numpy()) <= 1e-5 * max(np.linalg.norm(x_t.grad.numpy()), 1.0)
    g_ref = flat.grad.numpy()
    assert np.linalg.norm(g_np - g_ref) <= 1e-5 * max(np.linalg.norm(g_ref), 1.0)


_THREADS_SCRIPT = """
import hashlib, sys
import numpy as np
from policylab.deep import PPO
from policylab.deep.vector_cartpole import VectorCartPole
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
    """Ratios one float32 step around 1±ε: the rounded products may tie; torch's ``minimum`` then splits
    the gradient and ``clamp`` passes it on its closed interval. The reference is autograd of the
    surrogate on the SAME rounded ratios ρ (so neither libm's ``exp`` nor the CPU decides a tie), times
    ∂ρ/∂logp = ρ."""
    rng = np.random.default_rng(5)
    n, eps = 4000, 0.2
    old = rng.normal(size=n).astype(np.float32)
    edge = np.float32(1 + eps) * (1 + rng.integers(-3, 4, size=n).astype(np.float32) * np.finfo(np.float32).eps)
    logp = (old + np.log(edge.astype(np.float64))).astype(np.float32)
    adv = rng.normal(size=n).astype(np.float32)
    ours = ppo_clip_loss_grad(logp, old, adv, eps)
    ratio = np.exp(logp - old)  # the same float32 ratios the function computes on this machine
    r = torch.tensor(ratio, requires_grad=True)
    a = torch.tensor(adv)
    (-torch.minimum(r * a, torch.clamp(r, 1.0 - eps, 1.0 + eps) * a).mean()).backward()
    ref = r.grad.numpy() * ratio
    ties = ratio * adv == np.clip(ratio, 1 - eps, 1 + eps) * adv
    assert (ties & (ratio != np.float32(1 + eps))).any()  # rounding ties off the boundary are exercised
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-12)
    # and against the torch loss itself, up to the one-sided choice where exp's rounding decides it
    t = torch.tensor(logp, requires_grad=True)
    ppo_clip_loss(t, torch.tensor(old), torch.tensor(adv), eps).backward()
    _assert_grad_or_one_sided_at_kinks(ours.astype(np.float64), t.grad.numpy().astype(np.float64), ratio,
                                       adv.astype(np.float64), eps, rtol=1e-6, atol=1e-12, ulps=8)


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
