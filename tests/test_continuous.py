"""Continuous control plumbing: normalization inside the agents (checkpoint, act, evaluate, resume),
vectorization sync | async | fast, evaluation during training with early stop, network options,
MuJoCo presets, and bad input."""

import json
import sys

import numpy as np
import pytest
import torch

from policylab.deep import A2C, PPO, REINFORCE, ActorCritic
from policylab.deep.callbacks import EvalCallback
from policylab.deep.config import load_preset
from policylab.errors import InputError

SMALL = {"n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 2, "hidden_sizes": (16, 16)}
NORM = {"normalize_obs": True, "normalize_reward": True}


def _weights(agent):
    return {k: v.clone() for k, v in agent.net.state_dict().items()}


def _assert_same_agent(a, b):
    for k, v in _weights(a).items():
        torch.testing.assert_close(v, _weights(b)[k], rtol=0, atol=0)
    for k, v in a.normalizer.state_dict().items():
        np.testing.assert_array_equal(v, b.normalizer.state_dict()[k])


def test_normalization_statistics_follow_the_training_stream():
    agent = PPO("Pendulum-v1", seed=0, **SMALL, **NORM)
    agent.learn(256)
    norm = agent.normalizer
    # 2 reset observations + 256 step observations, plus SB3's pseudo-count 1e-4
    assert norm.obs_rms.count == pytest.approx(2 + 256 + 1e-4)
    assert norm.ret_rms.count == pytest.approx(256 + 1e-4)
    # rollout observations are normalized: roughly standardized, bounded by clip_obs
    obs = agent.storage.flat("obs")
    assert np.abs(obs).max() <= 10.0 and np.abs(obs.mean(0)).max() < 1.5
    # rewards stored are the scaled ones: Pendulum's raw rewards are in [−16.3, 0]
    assert np.abs(agent.storage.rewards).max() < 16.0 and agent.storage.rewards.std() < 5.0


@pytest.mark.parametrize("cls", [PPO, A2C, REINFORCE, ActorCritic])
def test_checkpoint_load_act_gives_identical_actions(cls, tmp_path):
    kw = {"n_envs": 2} if cls in (A2C, ActorCritic) else {}
    agent = cls("Pendulum-v1", seed=1, **kw, **NORM)
    agent.learn(300)
    agent.save(tmp_path / "ck")
    loaded = cls.load(tmp_path / "ck")
    obs = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32) * 3
    np.testing.assert_array_equal(agent.act(obs), loaded.act(obs))
    _assert_same_agent(agent, loaded)
    # act() applies the saved normalization: changing the statistics changes the action
    loaded.normalizer.obs_rms.mean = loaded.normalizer.obs_rms.mean + 5.0
    assert not np.array_equal(agent.act(obs), loaded.act(obs))


def test_evaluate_does_not_change_statistics():
    agent = PPO("Pendulum-v1", seed=0, **SMALL, **NORM)
    agent.learn(128)
    before = agent.normalizer.state_dict()
    agent.evaluate(episodes=2)
    for k, v in agent.normalizer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("cls", [PPO, A2C])
def test_kill_and_resume_gives_identical_statistics_and_weights(cls, tmp_path):
    kw = dict(SMALL) if cls is PPO else {"n_envs": 2, "n_steps": 8, "hidden_sizes": (16, 16)}
    straight = cls("Pendulum-v1", seed=3, **kw, **NORM).learn(512)
    first = cls("Pendulum-v1", seed=3, **kw, **NORM).learn(256, checkpoint_dir=tmp_path / "run")
    del first  # "killed" after its checkpoint
    resumed = cls.load(tmp_path / "run").learn(512)
    assert resumed.num_steps == straight.num_steps
    _assert_same_agent(straight, resumed)


def test_kill_and_resume_on_mujoco_restores_the_physics(tmp_path):
    pytest.importorskip("mujoco")
    straight = PPO("Hopper-v5", seed=3, **SMALL, **NORM).learn(512)
    PPO("Hopper-v5", seed=3, **SMALL, **NORM).learn(256, checkpoint_dir=tmp_path / "run")
    resumed = PPO.load(tmp_path / "run").learn(512)
    np.testing.assert_array_equal(straight.storage.obs, resumed.storage.obs)  # same trajectories
    _assert_same_agent(straight, resumed)


def test_sync_and_async_vectorization_give_identical_rollouts():
    sync = PPO("Pendulum-v1", seed=5, vectorization="sync", **SMALL, **NORM)
    asyn = PPO("Pendulum-v1", seed=5, vectorization="async", **SMALL, **NORM)
    try:
        assert type(asyn.env).__name__ == "AsyncVectorEnv"
        sync.learn(128)
        asyn.learn(128)
        for name in ("obs", "actions", "rewards", "values", "next_values", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(sync.storage, name), getattr(asyn.storage, name), err_msg=name)
        _assert_same_agent(sync, asyn)
    finally:
        asyn.env.close()


def test_fast_vectorization_reaches_the_compiled_cartpole():
    fast = PPO("CartPole-v1", seed=0, vectorization="fast", **SMALL)
    sync = PPO("CartPole-v1", seed=0, vectorization="sync", **SMALL)
    assert type(fast.env).__name__ == "VectorCartPole"
    fast.learn(256)
    sync.learn(256)
    np.testing.assert_array_equal(fast.storage.obs, sync.storage.obs)  # same trajectories, bit for bit
    for k, v in _weights(fast).items():
        torch.testing.assert_close(v, _weights(sync)[k], rtol=0, atol=0)


def test_stop_at_return_stops_at_first_qualifying_eval_and_saves_best(tmp_path):
    agent = PPO("CartPole-v1", seed=0, **load_preset("CartPole-v1", "ppo"))
    agent.learn(60_000, eval_every=1024, eval_episodes=5, stop_at_return=150.0,
                checkpoint_dir=tmp_path / "run", log_dir=tmp_path / "run", tensorboard=False)
    hist = agent.eval_callback.history
    assert agent.eval_callback.stopped and agent.num_steps < 60_000
    assert hist[-1][1] >= 150.0 and all(m < 150.0 for _, m, _ in hist[:-1])
    assert hist[-1][0] == agent.num_steps  # stopped right after that evaluation
    best = json.loads((tmp_path / "run" / "best" / "best.json").read_text())
    assert best["mean_return"] == max(m for _, m, _ in hist) and best["step"] == hist[-1][0]
    reloaded = PPO.load(tmp_path / "run" / "best")
    assert reloaded.evaluate(episodes=5).mean == pytest.approx(best["mean_return"])
    csv = (tmp_path / "run" / "progress.csv").read_text().splitlines()
    assert "eval/mean_return" in csv[0] and "eval/std_return" in csv[0]


def test_eval_callback_schedule_and_resume_of_best(tmp_path):
    cb = EvalCallback(1000, episodes=1, start_step=2500)
    assert cb._next == 3000
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "best.json").write_text(json.dumps({"mean_return": 42.0}))
    assert EvalCallback(10, best_dir=tmp_path / "best").best_mean == 42.0


def test_n_timesteps_from_the_config_makes_total_steps_optional():
    agent = PPO("Pendulum-v1", seed=0, n_timesteps=128, **SMALL)
    agent.learn()
    assert agent.num_steps == 128
    with pytest.raises(InputError, match="total_steps is required"):
        PPO("Pendulum-v1", seed=0, **SMALL).learn()


def test_network_options():
    ortho = PPO("Pendulum-v1", seed=0, **SMALL)
    plain = PPO("Pendulum-v1", seed=0, ortho_init=False, **SMALL)
    w_o, w_p = ortho.net.actor[2].weight.detach(), plain.net.actor[2].weight.detach()  # hidden 16×16
    torch.testing.assert_close(w_o @ w_o.T, 2.0 * torch.eye(16), atol=1e-5, rtol=0)  # orthogonal, gain √2
    assert (w_p @ w_p.T - 2.0 * torch.eye(16)).abs().max() > 0.5
    bound = 1 / np.sqrt(16)  # PyTorch's default nn.Linear init: U(−1/√fan_in, 1/√fan_in)
    assert w_p.abs().max() <= bound and plain.net.actor[2].bias.abs().max() > 0
    shared = PPO("Pendulum-v1", seed=0, shared_trunk=True, **SMALL)
    assert shared.backend.name == "torch" and "share a trunk" in shared.notes[0]  # auto: numpy needs two MLPs
    assert ortho.backend.name == "numpy"
    n_sep = sum(p.numel() for p in ortho.net.parameters())
    n_shared = sum(p.numel() for p in shared.net.parameters())
    assert n_sep - n_shared == 3 * 16 + 16 + 16 * 16 + 16  # one trunk fewer
    shared.learn(128)  # trains through the shared body


def test_mujoco_preset_trains_with_normalization():
    pytest.importorskip("mujoco")
    agent = PPO("InvertedPendulum-v5", seed=0, **load_preset("InvertedPendulum-v5", "ppo"))
    assert agent.normalizer is not None and agent.config.n_timesteps == 1_000_000
    agent.learn(64)
    assert agent.normalizer.obs_rms.count == pytest.approx(1 + 64 + 1e-4)


# ---------------------------------------------------------------- bad input

def test_bad_input_is_rejected_before_any_work(monkeypatch):
    with pytest.raises(InputError, match="normalize_obs=True needs a Box observation space"):
        PPO("FrozenLake-v1", normalize_obs=True)
    with pytest.raises(InputError, match="unknown env id 'NoSuchEnv-v0'"):
        PPO("NoSuchEnv-v0", normalize_obs=True)
    with pytest.raises(InputError, match="vectorization"):
        PPO("Pendulum-v1", vectorization="threads")
    with pytest.raises(InputError, match="no compiled env for 'Pendulum-v1'"):
        PPO("Pendulum-v1", vectorization="fast")
    with pytest.raises(InputError, match="shared_trunk"):
        REINFORCE("Pendulum-v1", shared_trunk=True)
    with pytest.raises(InputError, match="clip_obs"):
        PPO("Pendulum-v1", clip_obs=0.0)
    agent = PPO("Pendulum-v1", **SMALL)
    for bad in (0, -5):
        with pytest.raises(InputError, match="eval_every must be a positive"):
            agent.learn(128, eval_every=bad, stop_at_return=0.0)
    with pytest.raises(InputError, match="eval_every must be a positive"):
        agent.learn(128, eval_every=-1)
    assert agent.num_steps == 0
    monkeypatch.setitem(sys.modules, "mujoco", None)  # as if the mujoco extra were not installed
    for vec in ("sync", "async"):
        with pytest.raises(InputError, match=r'pip install "policylab\[mujoco\]"'):
            PPO("Hopper-v5", vectorization=vec)


def test_cli_eval_every_stop_at_return_and_preset_steps(tmp_path, capsys):
    from policylab.cli import main

    out = tmp_path / "run"
    (tmp_path / "p.yaml").write_text("n_timesteps: 2048\nn_envs: 2\nn_steps: 64\nbatch_size: 64\nn_epochs: 2\n"
                                     "hidden_sizes: [16]\nnormalize_obs: true\nnormalize_reward: true\n")
    args = ["train", "ppo", "--env", "Pendulum-v1", "--config", str(tmp_path / "p.yaml"), "--out", str(out),
            "--no-progress", "--no-tensorboard", "--eval-every", "512", "--eval-episodes", "2"]
    assert main(args + ["--stop-at-return=-1e9"]) == 0  # no --steps: the preset's n_timesteps
    text = capsys.readouterr().out
    assert "for 2,048 steps" in text and "stopped: --stop-at-return reached" in text
    agent = PPO.load(out)
    assert agent.num_steps == 512 and (out / "best" / "best.json").is_file()
    assert main(["eval", str(out / "best"), "--episodes", "2"]) == 0
    assert main(args[:-4] + ["--out", str(tmp_path / "y"), "--stop-at-return", "0"]) == 2  # needs --eval-every
    assert main(args + ["--out", str(tmp_path / "z"), "--eval-every=-3"]) == 2
    assert "--eval-every must be a positive" in capsys.readouterr().err


def test_kill_and_resume_with_async_envs_restores_the_subprocess_envs(tmp_path):
    """Sub-envs in subprocesses are checkpointed too (their RNGs, MuJoCo physics, wrapper counters):
    an async run resumed from its checkpoint equals the uninterrupted run, as a sync one does."""
    pytest.importorskip("mujoco")
    kw = {**SMALL, **NORM, "vectorization": "async"}
    runs = []
    try:
        straight = PPO("Hopper-v5", seed=3, **kw)
        runs.append(straight)
        straight.learn(512)
        first = PPO("Hopper-v5", seed=3, **kw)
        runs.append(first)
        first.learn(256, checkpoint_dir=tmp_path / "run")
        resumed = PPO.load(tmp_path / "run")
        runs.append(resumed)
        assert type(resumed.env).__name__ == "AsyncVectorEnv"
        resumed.learn(512)
        np.testing.assert_array_equal(straight.storage.obs, resumed.storage.obs)  # same trajectories
        _assert_same_agent(straight, resumed)
    finally:
        for agent in runs:
            agent.env.close()
