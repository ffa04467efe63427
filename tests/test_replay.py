"""ReplayBuffer: wrap-around, vector envs, n-step across episode ends, truncation vs termination,
seeded sampling, save/load, offline datasets."""

import numpy as np
import pytest

from policylab import returns
from policylab.deep.replay import ReplayBuffer
from policylab.errors import CheckpointError, DataError, InputError


def _fill(buf, steps, n_envs=1, term_every=0, trunc_every=0):
    for t in range(steps):
        obs = np.full((n_envs, buf.obs_dim), t, np.float32) + np.arange(n_envs)[:, None] * 1000
        term = np.full(n_envs, term_every and (t + 1) % term_every == 0)
        trunc = np.full(n_envs, trunc_every and (t + 1) % trunc_every == 0)
        buf.add(obs, np.full(n_envs, t % 3), np.full(n_envs, float(t)), obs + 0.5, term, trunc)


def test_wraparound_keeps_newest_rows():
    buf = ReplayBuffer(5, 2, n_envs=1)
    _fill(buf, 7)
    assert buf.full and buf.pos == 2 and len(buf) == 5
    assert sorted(buf.rewards[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    s = buf.sample(200)
    assert set(s.rewards.tolist()) == {2.0, 3.0, 4.0, 5.0, 6.0}
    assert np.array_equal(s.next_obs, s.obs + 0.5) and np.allclose(s.discounts, 0.99)


def test_vector_env_layout_and_memory():
    buf = ReplayBuffer(10, 4, n_envs=2)
    assert buf.rows == 5 and buf.capacity == 10
    _fill(buf, 3, n_envs=2)
    s = buf.sample(500)
    env = (s.obs[:, 0] >= 1000).astype(int)
    assert np.array_equal(s.obs[:, 0] - 1000 * env, s.rewards)  # each sample stays in its env column
    assert set(env.tolist()) == {0, 1}
    # 2·4·4 (obs, next obs) + 8 (int64 action) + 4 (reward) + 2 (flags) = 46 bytes per transition
    assert ReplayBuffer(1_000_000, 4).nbytes == 46_000_000


def test_termination_vs_truncation_one_step():
    buf = ReplayBuffer(4, 1, gamma=0.9)
    buf.add([[0]], [0], [1.0], [[9]], [True], [False])
    buf.add([[1]], [0], [1.0], [[8]], [False], [True])
    s = buf.transitions(np.array([0, 1]), np.array([0, 0]))
    assert np.allclose(s.discounts, [0.0, 0.9])  # terminated: no bootstrap; truncated: γ
    assert np.array_equal(s.next_obs[:, 0], [9, 8])  # the true final observations


def test_n_step_windows_across_episode_ends():
    g, n = 0.5, 3
    buf = ReplayBuffer(8, 1, n_step=n, gamma=g)
    # episode A: rows 0-2, terminated at row 2; episode B: rows 3-4, truncated at 4; C: rows 5-6 (open)
    term = [False, False, True, False, False, False, False]
    trunc = [False, False, False, False, True, False, False]
    r = np.arange(1.0, 8.0)
    for t in range(7):
        buf.add([[t]], [0], [r[t]], [[t + 0.5]], [term[t]], [trunc[t]])
    s = buf.transitions(np.arange(7), np.zeros(7, int))
    assert np.allclose(s.rewards, [1 + .5 * 2 + .25 * 3, 2 + .5 * 3, 3, 4 + .5 * 5, 5, 6 + .5 * 7, 7])
    assert np.allclose(s.discounts, [0, 0, 0, .25, .5, .25, .5])
    assert np.array_equal(s.next_obs[:, 0], [2.5, 2.5, 2.5, 4.5, 4.5, 6.5, 6.5])
    # the target r + disc·V(next) equals returns.n_step_returns with V of each row's next obs
    v = np.arange(7) + 0.5
    expect = returns.n_step_returns(r, g, v, n, terminated=np.array(term), truncated=np.array(trunc))
    assert np.allclose(s.rewards + s.discounts * (s.next_obs[:, 0]), expect)


def test_n_step_window_wraps_but_stops_at_newest_row():
    buf = ReplayBuffer(4, 1, n_step=3, gamma=0.5)
    for t in range(6):  # rows hold t = 4, 5, 2, 3; newest is row 1 (t=5), oldest row 2 (t=2)
        buf.add([[t]], [0], [float(t)], [[t + 0.5]], [False], [False])
    s = buf.transitions(np.array([2, 3, 0, 1]), np.zeros(4, int))
    assert np.allclose(s.rewards, [2 + 1.5 + 1, 3 + 2 + 1.25, 4 + 2.5, 5])
    assert np.allclose(s.discounts, [0.125, 0.125, 0.25, 0.5])
    assert np.array_equal(s.next_obs[:, 0], [4.5, 5.5, 5.5, 5.5])


def test_same_seed_same_samples_and_save_load(tmp_path):
    a, b = ReplayBuffer(50, 3, n_envs=2, seed=7), ReplayBuffer(50, 3, n_envs=2, seed=7)
    _fill(a, 40, 2, term_every=7)
    _fill(b, 40, 2, term_every=7)
    assert np.array_equal(a.sample(32).obs, b.sample(32).obs)
    a.save(tmp_path / "rb.safetensors")
    c = ReplayBuffer.load(tmp_path / "rb.safetensors")
    assert (c.pos, c.full, len(c)) == (a.pos, a.full, len(a))
    for _ in range(3):
        x, y = a.sample(16), c.sample(16)
        assert all(np.array_equal(getattr(x, k), getattr(y, k)) for k in ("obs", "actions", "rewards", "discounts"))
    # both continue identically after more writes
    _fill(a, 5, 2)
    _fill(c, 5, 2)
    assert np.array_equal(a.sample(64).next_obs, c.sample(64).next_obs)
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError):
        ReplayBuffer.load(tmp_path / "bad.safetensors")


def test_from_arrays_validates():
    obs = np.zeros((4, 2))
    ok = {"obs": obs, "actions": [0, 1, 1, 0], "rewards": np.ones(4), "next_obs": obs, "terminated": np.zeros(4, bool)}
    buf = ReplayBuffer.from_arrays(**ok, n_actions=2)
    assert len(buf) == 4 and buf.full
    with pytest.raises(DataError, match="'rewards' has 3 rows"):
        ReplayBuffer.from_arrays(**(ok | {"rewards": np.ones(3)}), n_actions=2)
    with pytest.raises(DataError, match="row 2: action 5"):
        ReplayBuffer.from_arrays(**(ok | {"actions": [0, 1, 5, 0]}), n_actions=2)
    with pytest.raises(DataError, match="row 1"):
        ReplayBuffer.from_arrays(**(ok | {"rewards": [0, np.nan, 0, 0]}), n_actions=2)
    with pytest.raises(InputError):
        ReplayBuffer(0, 2)
    with pytest.raises(InputError):
        ReplayBuffer(4, 2).sample(3)
