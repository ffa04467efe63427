"""Observation/reward normalization (policylab.deep.normalize) against numpy over the whole
stream, a hand-computed discounted-return variance, and SB3's VecNormalize on the same data."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policylab.deep.normalize import Normalizer, RunningMeanStd, parallel_moments
from policylab.errors import CheckpointError, InputError

finite = st.floats(-1e3, 1e3, allow_nan=False, width=64)


@st.composite
def stream_and_split(draw):
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 4))
    xs = draw(arrays(np.float64, (n, d), elements=finite))
    cuts = sorted(draw(st.lists(st.integers(1, n - 1), max_size=6, unique=True))) if n > 1 else []
    return xs, [0, *cuts, n]


@given(stream_and_split())
def test_running_moments_equal_numpy_over_the_stream_for_any_batch_split(data):
    xs, bounds = data
    rms = RunningMeanStd((xs.shape[1],), epsilon=0.0)  # no prior: exactly the stream's moments
    for a, b in itertools.pairwise(bounds):
        rms.update(xs[a:b])
    scale = 1.0 + np.abs(xs).max()
    np.testing.assert_allclose(rms.mean, xs.mean(0), rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(rms.var, xs.var(0), rtol=1e-7, atol=1e-9 * scale ** 2)
    assert rms.count == xs.shape[0]


@given(stream_and_split())
def test_default_prior_is_a_pseudo_sample_of_mean_0_var_1(data):
    """SB3's start (μ=0, σ²=1, count 1e-4) = moments of the stream plus a point mass of weight ε
    with mean 0 and variance 1."""
    xs, bounds = data
    rms = RunningMeanStd((xs.shape[1],))
    for a, b in itertools.pairwise(bounds):
        rms.update(xs[a:b])
    eps, n = 1e-4, xs.shape[0]
    m = xs.sum(0) / (n + eps)
    var = (eps * (1.0 + m ** 2) + ((xs - m) ** 2).sum(0)) / (n + eps)
    scale = 1.0 + np.abs(xs).max()
    np.testing.assert_allclose(rms.mean, m, rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(rms.var, var, rtol=1e-7, atol=1e-9 * scale ** 2)


def test_parallel_moments_is_symmetric():
    a = parallel_moments(1.0, 2.0, 3.0, -4.0, 0.5, 7.0)
    b = parallel_moments(-4.0, 0.5, 7.0, 1.0, 2.0, 3.0)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def _prior_var(values, eps=1e-4):
    """Variance of ``values`` merged with SB3's prior pseudo-sample (weight ε, mean 0, var 1)."""
    x = np.asarray(values, dtype=np.float64)
    m = x.sum() / (x.size + eps)
    return (eps * (1.0 + m ** 2) + ((x - m) ** 2).sum()) / (x.size + eps)


def test_reward_scaled_by_hand_computed_discounted_return_std():
    # one env, γ = 0.5; an episode ends after step 2, so G restarts at step 3
    rewards, dones = [1.0, 2.0, 3.0, -1.0], [False, True, False, False]
    returns = [1.0, 0.5 * 1.0 + 2.0, 3.0, 0.5 * 3.0 - 1.0]  # G_t = γ G_{t−1} + r_t, 0 after an end
    norm = Normalizer(1, 1, gamma=0.5, normalize_obs=False, clip_reward=1e6)
    norm.reset(np.zeros((1, 1)))
    for t, (r, d) in enumerate(zip(rewards, dones)):
        _, r_hat = norm.step(np.zeros((1, 1)), np.array([r]), np.array([d]))
        expected = r / np.sqrt(_prior_var(returns[:t + 1]) + 1e-8)
        np.testing.assert_allclose(r_hat, [expected], rtol=1e-6)
    assert norm.returns[0] == pytest.approx(returns[-1])


def test_reward_clipping_and_observation_clipping():
    norm = Normalizer(2, 1, gamma=0.99, clip_obs=1.5, clip_reward=0.7)
    norm.reset(np.zeros((1, 2)))
    o = norm.obs(np.array([[1e6, -1e6], [0.005, 0.0]]))
    np.testing.assert_allclose(o, [[1.5, -1.5], [0.005 / np.sqrt(1e-4 / (1 + 1e-4) + 1e-8), 0.0]], rtol=1e-6)
    _, r = norm.step(np.zeros((1, 2)), np.array([1e6]), np.array([False]))
    assert r[0] == pytest.approx(0.7)


def test_frozen_normalizer_does_not_change_statistics():
    norm = Normalizer(3, 2, gamma=0.9)
    rng = np.random.default_rng(0)
    norm.reset(rng.normal(size=(2, 3)))
    norm.step(rng.normal(size=(2, 3)), rng.normal(size=2), np.array([False, True]))
    before = norm.state_dict()
    norm.training = False
    norm.reset(rng.normal(size=(2, 3)) * 5)
    norm.step(rng.normal(size=(2, 3)) * 5, rng.normal(size=2), np.array([False, False]))
    after = norm.state_dict()
    for k in ("obs_mean", "obs_var", "obs_count", "ret_mean", "ret_var", "ret_count"):
        np.testing.assert_array_equal(before[k], after[k])


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    obs, rew = rng.normal(size=(20, 4, 3)), rng.normal(size=(20, 4))
    done = rng.random((20, 4)) < 0.2
    a = Normalizer(3, 4, gamma=0.95)
    a.reset(obs[0])
    for t in range(10):
        a.step(obs[t], rew[t], done[t])
    b = Normalizer(3, 4, gamma=0.95)
    b.load_state_dict(a.state_dict())
    for t in range(10, 20):
        oa, ra = a.step(obs[t], rew[t], done[t])
        ob, rb = b.step(obs[t], rew[t], done[t])
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(ra, rb)


def test_bad_state_and_clip_raise():
    n = Normalizer(3, 2, gamma=0.9)
    bad = Normalizer(4, 2, gamma=0.9).state_dict()
    with pytest.raises(CheckpointError, match="normalization"):
        n.load_state_dict(bad)
    with pytest.raises(InputError, match="clip_obs"):
        Normalizer(3, 2, gamma=0.9, clip_obs=0.0)


def test_matches_sb3_vecnormalize_on_the_same_stream():
    """Peer check: SB3's VecNormalize over a DummyVecEnv replaying a fixed stream (with episode
    ends and auto-resets) gives the same normalized observations, terminal observations and
    scaled rewards as Normalizer."""
    gym = pytest.importorskip("gymnasium")
    vec_env = pytest.importorskip("stable_baselines3.common.vec_env")

    T, N, D, gamma = 30, 3, 2, 0.9
    rng = np.random.default_rng(3)
    nxt = rng.normal(2.0, 3.0, size=(T + 1, N, D)).astype(np.float32)    # obs after auto-reset
    final = rng.normal(-1.0, 2.0, size=(T + 1, N, D)).astype(np.float32)  # last obs of an episode
    rew = rng.normal(1.0, 5.0, size=(T + 1, N))
    done = rng.random((T + 1, N)) < 0.15

    class Replay(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (D,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def __init__(self, i):
            self.i, self.t = i, 0

        def reset(self, seed=None, options=None):
            return nxt[self.t, self.i], {}

        def step(self, action):
            self.t += 1
            t, i = self.t, self.i
            return (final[t, i] if done[t, i] else nxt[t, i]), float(rew[t, i]), bool(done[t, i]), False, {}

    sb3 = vec_env.VecNormalize(vec_env.DummyVecEnv([lambda i=i: Replay(i) for i in range(N)]), gamma=gamma)
    ours = Normalizer(D, N, gamma=gamma)
    np.testing.assert_allclose(ours.reset(nxt[0]), sb3.reset(), rtol=1e-5, atol=1e-6)
    for t in range(1, T + 1):
        o_sb3, r_sb3, d_sb3, infos = sb3.step(np.zeros(N, dtype=np.int64))
        o, r = ours.step(nxt[t], rew[t], done[t])
        np.testing.assert_array_equal(d_sb3, done[t])
        np.testing.assert_allclose(o, o_sb3, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r, r_sb3, rtol=1e-5, atol=1e-6)
        for i in np.flatnonzero(done[t]):
            np.testing.assert_allclose(ours.obs(final[t, i]), infos[i]["terminal_observation"],
                                       rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.obs_rms.var, sb3.obs_rms.var, rtol=1e-6)  # SB3 averages float32 batches
    np.testing.assert_allclose(ours.ret_rms.var, sb3.ret_rms.var, rtol=1e-6)
