"""VectorCartPole against Gymnasium's own CartPole-v1 (the independent reference).

- per-step transitions from identical states equal CartPoleEnv.step to 1e-12 (in fact bit-equal),
- whole seeded trajectories equal SyncVectorEnv's (both autoreset modes), episode statistics equal
  RecordEpisodeStatistics',
- truncation at 500, NEXT_STEP autoreset semantics, seeding, bad input.
"""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import RecordEpisodeStatistics
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab.deep.vector_cartpole import FAST_VECTOR_ENVS, VectorCartPole, make_fast_vector_env


def _balance(obs):
    """A simple linear controller that keeps CartPole up for 500 steps."""
    return (obs[:, 2] + 0.1 * obs[:, 3] + 0.01 * obs[:, 0] + 0.1 * obs[:, 1] > 0).astype(np.int64)


# ------------------------------------------------------------------ single transitions
def _gym_step(state, action):
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array(state, dtype=np.float64)
    obs, r, term, trunc, _ = env.step(int(action))
    return np.array(env.unwrapped.state), obs, r, term, trunc


finite = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False)


@settings(max_examples=30, deadline=None)
@given(
    states=st.lists(
        st.tuples(finite, finite, st.floats(-0.25, 0.25), finite), min_size=1, max_size=6
    ),
    data=st.data(),
)
def test_transition_matches_gymnasium_cartpole(states, data):
    n = len(states)
    actions = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    env = VectorCartPole(n, seed=0, autoreset_mode=AutoresetMode.NEXT_STEP)  # keeps the end state
    env.reset()
    env.state = np.array(states)
    obs, reward, term, trunc, _ = env.step(actions)
    for i in range(n):
        s_ref, obs_ref, r_ref, term_ref, trunc_ref = _gym_step(states[i], actions[i])
        np.testing.assert_allclose(env.state[i], s_ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(obs[i], obs_ref, rtol=0, atol=1e-12)
        assert reward[i] == r_ref == 1.0
        assert term[i] == term_ref
        assert trunc[i] == trunc_ref is False


def test_random_action_sequences_from_identical_states_match(rng):
    """Many steps from identical (random) states with random actions, state copied back only once."""
    n = 16
    start = rng.uniform(-0.05, 0.05, size=(n, 4))
    env = VectorCartPole(n, seed=1, autoreset_mode=AutoresetMode.NEXT_STEP)
    env.reset()
    env.state = start
    refs = []
    for i in range(n):
        e = gym.make("CartPole-v1")
        e.reset(seed=i)
        e.unwrapped.state = start[i].copy()
        refs.append(e)
    alive = np.ones(n, dtype=bool)
    for _ in range(60):
        a = rng.integers(0, 2, size=n)
        obs, reward, term, trunc, _ = env.step(a)
        for i in np.flatnonzero(alive):
            obs_ref, r_ref, term_ref, trunc_ref, _ = refs[i].step(int(a[i]))
            np.testing.assert_allclose(env.state[i], refs[i].unwrapped.state, rtol=0, atol=1e-12)
            np.testing.assert_allclose(obs[i], obs_ref, rtol=0, atol=1e-12)
            assert (reward[i], term[i], trunc[i]) == (r_ref, term_ref, trunc_ref)
            if term_ref:
                alive[i] = False
        if not alive.any():
            break
    assert not alive.all(), "random actions should have ended some episodes"


# ------------------------------------------------------------------ whole seeded trajectories
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_trajectories_equal_sync_vector_env(mode, rng):
    n, seed = 6, 11
    ref = gym.make_vec(
        "CartPole-v1", n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode}
    )
    ref = RecordEpisodeStatistics(ref)
    env = VectorCartPole(n, seed=seed, autoreset_mode=mode)
    assert env.metadata["autoreset_mode"] == ref.metadata["autoreset_mode"] == mode
    assert env.single_observation_space == ref.single_observation_space
    assert env.single_action_space == ref.single_action_space
    assert env.observation_space == ref.observation_space
    assert env.action_space == ref.action_space
    obs_ref, _ = ref.reset(seed=seed)
    obs, info = env.reset()  # constructor seed == reset(seed=seed)
    np.testing.assert_array_equal(obs, obs_ref)
    assert info == {}
    episodes = 0
    for t in range(1500):
        obs_b = obs_ref if t % 2 else obs
        a = np.where(rng.random(n) < 0.25, rng.integers(0, 2, n), _balance(obs_b))
        got, want = env.step(a), ref.step(a)
        for x, y in zip(got[:4], want[:4]):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
        obs, obs_ref = got[0], want[0]
        info, info_ref = got[4], want[4]
        assert set(info) == set(info_ref)
        if "episode" in info_ref:
            np.testing.assert_array_equal(info["_episode"], info_ref["_episode"])
            for k in ("r", "l"):
                np.testing.assert_array_equal(info["episode"][k], info_ref["episode"][k])
            episodes += info["_episode"].sum()
        if "final_obs" in info_ref:
            np.testing.assert_array_equal(info["_final_obs"], info_ref["_final_obs"])
            for x, y in zip(info["final_obs"], info_ref["final_obs"]):
                assert (x is None and y is None) or np.array_equal(x, y)
    assert episodes >= 10


# ------------------------------------------------------------------ truncation and autoreset
def test_truncation_at_500_then_next_step_reset():
    env = VectorCartPole(3, seed=5, autoreset_mode=AutoresetMode.NEXT_STEP)
    obs, _ = env.reset()
    total = np.zeros(3)
    for t in range(1, 501):
        obs, r, term, trunc, info = env.step(_balance(obs))
        total += r
        assert not term.any()
        assert trunc.all() == (t == 500)
    assert "episode" in info and info["_episode"].all()
    np.testing.assert_array_equal(info["episode"]["r"], [500.0] * 3)
    np.testing.assert_array_equal(info["episode"]["l"], [500] * 3)
    np.testing.assert_array_equal(total, 500.0)
    final = env.state.copy()
    assert np.abs(final).max() > 0.0
    # NEXT_STEP: the following step ignores the action and resets
    obs, r, term, trunc, info = env.step(np.array([1, 0, 1]))
    np.testing.assert_array_equal(r, 0.0)
    assert not term.any() and not trunc.any() and info == {}
    assert np.abs(obs).max() <= 0.05
    np.testing.assert_array_equal(obs, env.state.astype(np.float32))
    # the new episode counts from the step after the reset step
    obs, r, *_ = env.step(_balance(obs))
    np.testing.assert_array_equal(r, 1.0)


def test_termination_reward_and_stats_mixed():
    env = VectorCartPole(2, seed=0, autoreset_mode=AutoresetMode.NEXT_STEP)
    env.reset()
    env.state = np.array([[0.0, 0.0, 0.2094, 3.0], [0.0, 0.0, 0.0, 0.0]])
    _, r, term, trunc, info = env.step(np.array([1, 1]))
    assert term.tolist() == [True, False] and not trunc.any()
    np.testing.assert_array_equal(r, [1.0, 1.0])  # the terminating step is rewarded
    np.testing.assert_array_equal(info["_episode"], [True, False])
    np.testing.assert_array_equal(info["episode"]["l"], [1, 0])
    # copy 1 keeps its episode; copy 0 resets with zero reward
    _, r, term, trunc, info = env.step(np.array([0, 0]))
    np.testing.assert_array_equal(r, [0.0, 1.0])
    assert not term.any() and info == {}


def test_same_step_mode_returns_new_start_and_final_obs():
    env = VectorCartPole(2, seed=0, autoreset_mode="SameStep")
    env.reset()
    env.state = np.array([[2.39, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    obs, r, term, trunc, info = env.step(np.array([1, 1]))
    assert term.tolist() == [True, False] and not trunc.any()
    np.testing.assert_array_equal(r, [1.0, 1.0])
    assert info["_final_obs"].tolist() == [True, False]
    assert info["final_obs"][0][0] > 2.4 and info["final_obs"][1] is None
    assert np.abs(obs[0]).max() <= 0.05  # already the next episode's start
    _, r2, *_ = env.step(np.array([0, 0]))
    np.testing.assert_array_equal(r2, [1.0, 1.0])


def test_default_mode_is_same_step_and_spec_is_cartpole():
    env = VectorCartPole(2)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.spec.id == "CartPole-v1" and env.spec.max_episode_steps == 500
    assert VectorCartPole(2, max_episode_steps=50).spec.max_episode_steps == 50


def test_truncation_same_step_final_obs_at_horizon():
    env = VectorCartPole(2, seed=3, max_episode_steps=40)
    obs, _ = env.reset()
    for _ in range(39):
        obs, r, term, trunc, info = env.step(_balance(obs))
        assert not trunc.any() and not term.any() and r.tolist() == [1.0, 1.0]
    last = env.state.astype(np.float32)
    obs, _, term, trunc, info = env.step(_balance(obs))
    assert trunc.all() and not term.any()
    np.testing.assert_array_equal(info["episode"]["l"], [40, 40])
    final = np.stack(info["final_obs"])
    assert not np.array_equal(final, last)  # the step was taken before the reset
    np.testing.assert_array_equal(obs, env.state.astype(np.float32))
    assert np.abs(obs).max() <= 0.05


# ------------------------------------------------------------------ seeding
def test_seeding_reproducible(rng):
    acts = rng.integers(0, 2, size=(300, 4))

    def rollout(env, **kw):
        out = [env.reset(**kw)[0]]
        out += [env.step(a)[0] for a in acts]
        return np.stack(out)

    a = rollout(VectorCartPole(4, seed=7))
    b = rollout(VectorCartPole(4, seed=7))
    c = rollout(VectorCartPole(4), seed=7)
    d = rollout(VectorCartPole(4, seed=8))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, d)
    env = VectorCartPole(4, seed=7)
    first = rollout(env)
    np.testing.assert_array_equal(rollout(env, seed=7), first)  # reseeding restarts the stream
    assert not np.array_equal(rollout(env), first)  # reset() without seed continues it
    assert env.np_random_seed == (7, 8, 9, 10)
    np.testing.assert_array_equal(rollout(VectorCartPole(4), seed=[7, 8, 9, 10]), first)


# ------------------------------------------------------------------ factory and bad input
def test_factory():
    env = make_fast_vector_env("CartPole-v1", 8, seed=0)
    assert isinstance(env, VectorCartPole) and env.num_envs == 8
    assert isinstance(env, gym.vector.VectorEnv)
    assert "CartPole-v1" in FAST_VECTOR_ENVS
    with pytest.raises(ValueError, match="no fast vector env for 'Pendulum-v1'"):
        make_fast_vector_env("Pendulum-v1", 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_envs": 0}, "num_envs"),
        ({"num_envs": 2.5}, "num_envs"),
        ({"num_envs": 2, "seed": -1}, "seed"),
        ({"num_envs": 2, "seed": 1.5}, "seed"),
        ({"num_envs": 2, "max_episode_steps": 0}, "max_episode_steps"),
        ({"num_envs": 2, "autoreset_mode": "Sometimes"}, "autoreset_mode"),
        ({"num_envs": 2, "autoreset_mode": AutoresetMode.DISABLED}, "autoreset_mode"),
    ],
)
def test_bad_constructor_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VectorCartPole(**kwargs)


def test_bad_step_input():
    env = VectorCartPole(3, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(3, dtype=np.int64))
    env.reset()
    before = env.state
    with pytest.raises(ValueError, match="0 or 1"):
        env.step(np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="integer"):
        env.step(np.zeros(3))
    np.testing.assert_array_equal(env.state, before)  # nothing moved
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"reset_mask": np.ones(3, dtype=bool)})
    with pytest.raises(ValueError, match="length"):
        env.reset(seed=[1, 2])


def test_checkpoint_state_roundtrip_continues_identically(rng):
    """The env's whole state (physics, counters, per-copy generators) survives the JSON snapshot
    that policylab checkpoints take, so a resumed run continues with identical numbers."""
    import json

    from policylab.deep.env_state import env_state, set_env_state

    env = VectorCartPole(4, seed=2)
    env.reset()
    for a in rng.integers(0, 2, size=(37, 4)):
        env.step(a)
    snap = json.loads(json.dumps(env_state(env)))
    acts = rng.integers(0, 2, size=(200, 4))
    first = [env.step(a)[:4] for a in acts]
    fresh = VectorCartPole(4, seed=99)
    fresh.reset()
    set_env_state(fresh, snap)
    again = [fresh.step(a)[:4] for a in acts]
    for x, y in zip(first, again):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


def test_ppo_learns_identically_on_fast_and_gymnasium_env():
    """Same seed → policylab PPO on VectorCartPole and on Gymnasium's SyncVectorEnv sees the same
    transitions, so after training the networks are identical: the fast env changes speed only."""
    import torch

    from policylab.deep import PPO

    kw = {
        "n_envs": 4,
        "n_steps": 64,
        "batch_size": 256,
        "n_epochs": 1,
        "gamma": 0.98,
        "gae_lambda": 0.8,
    }
    fast = PPO(VectorCartPole(4, seed=3), seed=3, **kw).learn(512)
    ref = PPO("CartPole-v1", seed=3, **kw).learn(512)
    assert fast.num_steps == ref.num_steps == 512
    assert list(fast.recent_returns) == list(ref.recent_returns) and len(ref.recent_returns) > 10
    for (k, a), (_, b) in zip(fast.net.state_dict().items(), ref.net.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.mark.slow
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_long_run_bit_identical_to_sync_vector_env(mode):
    """8k steps × 16 copies: half nearly balanced (episodes reach the 500-step truncation), half
    noisy (early terminations at either threshold): every output bit-identical."""
    n, rng = 16, np.random.default_rng(123)
    ref = gym.make_vec(
        "CartPole-v1", n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode}
    )
    env = VectorCartPole(n, seed=77, autoreset_mode=mode)
    obs, obs_ref = env.reset()[0], ref.reset(seed=77)[0]
    np.testing.assert_array_equal(obs, obs_ref)
    truncations = terminations = 0
    noise = np.where(np.arange(n) < n // 2, 0.02, 0.5)
    for _ in range(8_000):
        a = np.where(rng.random(n) < noise, rng.integers(0, 2, n), _balance(obs))
        got, want = env.step(a), ref.step(a)
        for x, y in zip(got[:4], want[:4]):
            np.testing.assert_array_equal(x, y)
        obs = got[0]
        truncations += int(got[3].sum())
        terminations += int(got[2].sum())
    assert truncations > 50 and terminations > 50


_CORRIDOR = '''
import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if action == 1 else -1))
        return np.array([self.pos / 4], np.float32), float(self.pos == 4), self.pos == 4, False, {}


gym.register("TestCorridor-v0", entry_point=Corridor, max_episode_steps=20)
'''


def test_module_colon_id_trains_and_evaluates_from_the_cli(tmp_path, monkeypatch, capsys):
    """`--env my_module:Env-v0` imports the module that registers the env (Gymnasium's form)."""
    from policylab.cli import main

    (tmp_path / "corridor_env_mod.py").write_text(_CORRIDOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    small = ["--set", "n_envs=1", "--set", "n_steps=32", "--set", "batch_size=32", "--set", "n_epochs=1"]
    assert main(["train", "ppo", "--env", "corridor_env_mod:TestCorridor-v0", "--steps", "64", "--out", str(out),
                 "--no-progress", *small]) == 0
    assert main(["eval", str(out), "--episodes", "1"]) == 0
    assert "corridor_env_mod:TestCorridor-v0" in capsys.readouterr().out
    assert main(["train", "ppo", "--env", "no_such_module_xyz:X-v0", "--steps", "64", "--out", str(tmp_path / "b")]) == 2
    assert "cannot import module 'no_such_module_xyz'" in capsys.readouterr().err
