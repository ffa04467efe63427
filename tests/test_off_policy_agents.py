"""DQN and SAC on the Agent hooks: bad input, short runs, resume with and without the replay
buffer, offline DQN, the CLI. (Learning runs are in test_off_policy_slow.py.)"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

from policylab.deep.dqn import DQN, linear_epsilon
from policylab.deep.replay import REPLAY_FILE, ReplayBuffer
from policylab.deep.sac import SAC
from policylab.errors import CheckpointError, DataError, InputError

SMALL_DQN = {"learning_starts": 64, "batch_size": 16, "buffer_size": 500, "train_freq": 8, "gradient_steps": 4,
             "target_update_interval": 32, "hidden_sizes": (16, 16), "n_steps": 3, "double_q": True}
SMALL_SAC = {"learning_starts": 32, "batch_size": 16, "buffer_size": 400, "train_freq": 4, "gradient_steps": 2,
             "hidden_sizes": (16, 16)}


def _same_params(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.net.state_dict().values(), b.net.state_dict().values()))


# ---------------------------------------------------------------------------- bad input
def test_bad_input_is_one_clear_error():
    with pytest.raises(InputError, match="discrete actions only"):
        DQN("Pendulum-v1")
    with pytest.raises(InputError, match="continuous"):
        SAC("CartPole-v1")
    with pytest.raises(InputError, match="learning_starts"):
        DQN("CartPole-v1", learning_starts=1000, buffer_size=100)
    with pytest.raises(InputError, match="learning_starts"):
        SAC("Pendulum-v1", learning_starts=1000, buffer_size=100)
    with pytest.raises(InputError, match="ent_coef"):
        SAC("Pendulum-v1", ent_coef="sometimes")
    with pytest.raises(InputError, match="loss"):
        DQN("CartPole-v1", loss="l1")
    with pytest.raises(InputError, match="cql_alpha"):
        DQN("CartPole-v1", cql_alpha=-0.5)
    agent = DQN("CartPole-v1", **SMALL_DQN)
    data = {"obs": np.zeros((5, 4)), "actions": [0, 1, 0, 1, 0], "rewards": np.ones(5),
            "next_obs": np.zeros((5, 4)), "terminated": np.zeros(5, bool)}
    with pytest.raises(DataError, match="'rewards' has 4 rows"):
        agent.learn_offline(data | {"rewards": np.ones(4)}, gradient_steps=1)
    with pytest.raises(DataError, match="row 3: action 2"):
        agent.learn_offline(data | {"actions": [0, 1, 0, 2, 0]}, gradient_steps=1)
    with pytest.raises(DataError, match="features"):
        agent.learn_offline(data | {"obs": np.zeros((5, 3)), "next_obs": np.zeros((5, 3))}, gradient_steps=1)


def test_epsilon_schedule_is_linear_then_flat():
    c = DQN.config_class(exploration_fraction=0.5, exploration_initial_eps=1.0, exploration_final_eps=0.1)
    assert [round(linear_epsilon(c, p), 6) for p in (1.0, 0.75, 0.5, 0.0)] == [1.0, 0.55, 0.1, 0.1]


# ---------------------------------------------------------------------------- short runs
def test_dqn_short_run_logs_and_acts(tmp_path):
    agent = DQN("CartPole-v1", seed=1, **SMALL_DQN).learn(400, log_dir=tmp_path, tensorboard=False)
    assert agent.num_steps == 400 and len(agent.storage) == 400
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    assert {"losses/value_loss", "losses/q_values", "charts/exploration_rate"} <= set(rows[0])
    assert rows[0]["losses/value_loss"] == "" and float(rows[-1]["losses/value_loss"]) >= 0
    a = agent.act(np.zeros(4, np.float32))
    q = agent.net.q(torch.zeros(1, 4))
    assert a == int(q.argmax())  # greedy action = argmax_a Q(s, a)
    # the target net was refreshed from the online net at the last multiple of 32 steps, not after
    assert not torch.equal(agent.net.q[0].weight, agent.net.q_target[0].weight)
    assert "losses/cql_loss" not in rows[0]  # cql_alpha None: plain DQN online
    DQN("CartPole-v1", seed=1, cql_alpha=0.5, **SMALL_DQN).learn(400, log_dir=tmp_path / "cql", tensorboard=False)
    rows = list(csv.DictReader((tmp_path / "cql" / "progress.csv").open()))
    assert rows[0]["losses/cql_loss"] == "" and float(rows[-1]["losses/cql_loss"]) > 0  # α > 0 online too


def test_sac_short_run_actions_in_box():
    agent = SAC("Pendulum-v1", seed=0, **SMALL_SAC).learn(200)
    a = agent.act(np.zeros((7, 3), np.float32), deterministic=False)
    assert a.shape == (7, 1) and np.all(np.abs(a) <= 2.0)
    acts = agent.storage.actions[: agent.storage.size, 0]
    assert np.all(np.abs(acts) <= 2.0) and acts.std() > 0.1
    assert agent.net.log_ent_coef.item() != 0.0  # α is learned


@pytest.mark.parametrize("cls, kwargs, env", [(DQN, SMALL_DQN, "CartPole-v1"), (SAC, SMALL_SAC, "Pendulum-v1"),
                                              (SAC, {**SMALL_SAC, "backend": "torch"}, "Pendulum-v1")])
def test_resume_with_buffer_is_identical(tmp_path, cls, kwargs, env):
    full = cls(env, seed=3, save_replay_buffer=True, **kwargs).learn(320)
    half = cls(env, seed=3, save_replay_buffer=True, **kwargs).learn(160, checkpoint_dir=tmp_path)
    assert (tmp_path / REPLAY_FILE).is_file()
    resumed = cls.load(tmp_path)
    assert len(resumed.storage) == 160 and np.array_equal(resumed.storage.obs, half.storage.obs)
    resumed.learn(320)
    assert _same_params(full, resumed)
    assert np.array_equal(full.storage.sample(8).obs, resumed.storage.sample(8).obs)


def _per_tensor_adam(agent):
    """SAC's optimizers as written before the flat buffer: torch Adam over each tensor, foreach."""
    lr = agent.config.learning_rate
    agent.optimizers["actor"] = torch.optim.Adam(agent.net.actor.parameters(), lr=lr, foreach=True)
    agent.optimizers["critic"] = torch.optim.Adam(agent.net.critics.parameters(), lr=lr, foreach=True)
    return agent


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_sac_checkpoint_with_per_tensor_adam_state_resumes_with_the_same_numbers(tmp_path, backend):
    """A SAC checkpoint from before the flat parameter buffer (one Adam state per tensor) loads: the
    states are concatenated in buffer order and the run continues as the old optimizer would."""
    kw = {**SMALL_SAC, "backend": backend}
    full = _per_tensor_adam(SAC("Pendulum-v1", seed=2, save_replay_buffer=True, **kw)).learn(300)
    half = _per_tensor_adam(SAC("Pendulum-v1", seed=2, save_replay_buffer=True, **kw))
    half.learn(150, checkpoint_dir=tmp_path)
    groups = json.loads((tmp_path / "checkpoint.json").read_text())["optimizer_param_groups"]
    assert len(groups["critic"][0]["params"]) == len(list(half.net.critics.parameters())) > 1
    resumed = SAC.load(tmp_path)
    state = resumed.optimizers["critic"].state_dict()
    assert state["param_groups"][0]["params"] == [0] and state["param_groups"][0]["foreach"] is True
    moments = torch.cat([half.optimizers["critic"].state[p]["exp_avg"].reshape(-1)
                         for p in half.net.critics.parameters()])
    assert torch.equal(state["state"][0]["exp_avg"], moments)
    resumed.learn(300)
    for (k, x), (_, y) in zip(full.net.state_dict().items(), resumed.net.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=k)


def test_resume_without_buffer_starts_empty_and_mismatch_is_caught(tmp_path):
    DQN("CartPole-v1", seed=0, **SMALL_DQN).learn(160, checkpoint_dir=tmp_path / "a")
    assert not (tmp_path / "a" / REPLAY_FILE).exists()
    agent = DQN.load(tmp_path / "a")
    assert len(agent.storage) == 0 and agent.num_steps == 160
    agent.learn(240)  # continues (refills the buffer)
    assert agent.num_steps == 240
    b = DQN("CartPole-v1", seed=0, save_replay_buffer=True, **SMALL_DQN).learn(160, checkpoint_dir=tmp_path / "b")
    b.storage.save(tmp_path / "b" / REPLAY_FILE, num_steps=999)
    with pytest.raises(CheckpointError, match="step 999"):
        DQN.load(tmp_path / "b")


def test_load_names_the_file_and_key_of_an_incompatible_checkpoint(tmp_path):
    """Hand-made bad checkpoints (valid hashes, wrong contents) are one CheckpointError naming the
    weights file and the key: per-tensor Adam state that does not add up to the flat buffer, a
    missing weight, and a weight of the wrong shape. The layout DQN saved before its Q-net became
    one flat buffer (Adam state per weight tensor, optim/q/0…5/…) loads, concatenated."""
    from policylab.io.checkpoint import load_checkpoint, save_checkpoint

    DQN("CartPole-v1", seed=0, **SMALL_DQN).learn(100).save(tmp_path / "ok")
    tensors, meta = load_checkpoint(tmp_path / "ok")
    q = DQN("CartPole-v1", **SMALL_DQN).net.q
    old = {k: v for k, v in tensors.items() if not k.startswith("optim/")}
    for i, p in enumerate(q.parameters()):
        old |= {f"optim/q/{i}/step": torch.tensor(3.0), f"optim/q/{i}/exp_avg": torch.zeros_like(p),
                f"optim/q/{i}/exp_avg_sq": torch.zeros_like(p)}
    groups = {"q": [meta["optimizer_param_groups"]["q"][0] | {"params": [0, 1, 2, 3, 4, 5]}]}
    save_checkpoint(tmp_path / "old", old, meta | {"optimizer_param_groups": groups})
    state = DQN.load(tmp_path / "old").optimizers["q"].state_dict()["state"]
    assert list(state) == [0] and state[0]["exp_avg"].shape == (sum(p.numel() for p in q.parameters()),)
    short = {k: v for k, v in old.items() if not k.startswith("optim/q/5/")}
    short_groups = {"q": [groups["q"][0] | {"params": [0, 1, 2, 3, 4]}]}
    n, last = sum(p.numel() for p in q.parameters()), list(q.parameters())[-1].numel()
    cases = {"short": (short, short_groups, rf"key 'optim/q/0/exp_avg' has shape \({n - last},\), it needs \({n},\)"),
             "missing": ({k: v for k, v in tensors.items() if k != "net/q.0.weight"}, None,
                         r"missing key 'net/q.0.weight'"),
             "shape": (tensors | {"net/q_target.4.bias": torch.zeros(3)}, None,
                       r"key 'net/q_target.4.bias' has shape \(3,\), it needs \(2,\)")}
    for name, (t, g, message) in cases.items():
        save_checkpoint(tmp_path / name, t, meta | ({"optimizer_param_groups": g} if g else {}))
        weights = load_checkpoint(tmp_path / name)[1]["weights"]
        with pytest.raises(CheckpointError, match=rf"{re.escape(str(tmp_path / name / weights))} does not fit this DQN: {message}"):
            DQN.load(tmp_path / name)
    assert DQN.load(tmp_path / "ok").num_steps == 104  # 13 iterations of train_freq 8


# ---------------------------------------------------------------------------- offline
def test_learn_offline_fits_one_step_returns(tmp_path):
    """Every logged transition terminates with reward 1 (action 0) or 3 (action 1): Q → r."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(256, 4)).astype(np.float32)
    actions = rng.integers(0, 2, size=256)
    data = {"obs": obs, "actions": actions, "rewards": 1.0 + 2.0 * actions, "next_obs": obs,
            "terminated": np.ones(256, bool)}
    agent = DQN("CartPole-v1", seed=0, learning_rate=3e-3, batch_size=64, hidden_sizes=(32, 32),
                target_update_interval=50, loss="mse", cql_alpha=0.0)  # plain TD regression
    steps_before = agent.num_steps
    agent.learn_offline(data, gradient_steps=600, log_dir=tmp_path / "log", tensorboard=False)
    q = agent.net.q(torch.from_numpy(obs)).detach().numpy()
    assert np.abs(q.mean(axis=0) - [1.0, 3.0]).max() < 0.1
    assert agent.num_steps == steps_before  # no env interaction
    # the same data as a replay-buffer file gives the same fit
    ReplayBuffer.from_arrays(**data, n_actions=2).save(tmp_path / "d.safetensors")
    again = DQN("CartPole-v1", seed=0, learning_rate=3e-3, batch_size=64, hidden_sizes=(32, 32),
                target_update_interval=50, loss="mse", cql_alpha=0.0).learn_offline(tmp_path / "d.safetensors", gradient_steps=600)
    assert np.allclose(again.net.q(torch.from_numpy(obs)).detach().numpy(), q, atol=1e-5)


def test_cli_train_offline_equals_learn_offline(tmp_path, capsys):
    """``policylab train dqn --offline-data FILE --steps N`` is ``learn_offline(FILE, N)`` + save; bad
    requests are one-line errors (exit 2) before any work."""
    from policylab.cli import main

    rng = np.random.default_rng(1)
    obs = rng.normal(size=(128, 4)).astype(np.float32)
    actions = rng.integers(0, 2, size=128)
    data = {"obs": obs, "actions": actions, "rewards": 1.0 + 2.0 * actions, "next_obs": obs,
            "terminated": np.ones(128, bool)}
    ReplayBuffer.from_arrays(**data, n_actions=2).save(tmp_path / "d.safetensors")
    kw = {"hidden_sizes": (16,), "batch_size": 32, "learning_rate": 3e-3}
    sets = [a for k, v in (("hidden_sizes", "[16]"), ("batch_size", 32), ("learning_rate", 3e-3))
            for a in ("--set", f"{k}={v}")]
    assert main(["train", "dqn", "--env", "CartPole-v1", "--offline-data", str(tmp_path / "d.safetensors"),
                 "--steps", "200", "--out", str(tmp_path / "run"), "--no-progress", "--eval-episodes", "2",
                 *sets]) == 0
    assert "200 gradient steps; greedy evaluation over 2 episodes" in capsys.readouterr().out
    ref = DQN("CartPole-v1", seed=0, **kw).learn_offline(tmp_path / "d.safetensors", gradient_steps=200)
    got = DQN.load(tmp_path / "run")
    x = torch.from_numpy(obs)
    assert np.allclose(got.net.q(x).detach().numpy(), ref.net.q(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(ref.net.q(x).detach().numpy(), DQN("CartPole-v1", seed=0, **kw).net.q(x).detach().numpy())
    for args, msg in [(["--env", "Acrobot-v1"], "obs_dim=4"), (["--env", "CartPole-v1", "--steps", "5"], "already"),
                      (["--env", "CartPole-v1"], "needs --steps")]:
        out = tmp_path / ("run" if "already" == msg else "other")
        argv = ["train", "dqn", "--offline-data", str(tmp_path / "d.safetensors"), "--out", str(out), *args]
        if "--steps" not in args and msg != "needs --steps":
            argv += ["--steps", "5"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
    assert main(["train", "ppo", "--env", "CartPole-v1", "--offline-data", str(tmp_path / "d.safetensors"),
                 "--steps", "5", "--out", str(tmp_path / "p")]) == 2
    assert "ppo does not learn offline" in capsys.readouterr().err
    assert not (tmp_path / "other").exists() and not (tmp_path / "p").exists()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_learn_offline_cql_reaches_the_regularized_fixed_point(backend):
    """One state, terminal transitions: action 0 logged 16 times with r = 1, action 1 48 times with
    r = 3 (μ = ¼, ¾). The expected minibatch gradient of mse TD + α·CQL on Q(s, a) is
    2μ_a(Q_a − r_a) + α(softmax(Q)_a − μ_a); with α = 4 it vanishes at Q ≈ (1.438, 2.854)
    (scipy's root), not at r — the rarely logged action is pulled toward the greedy one's share."""
    from scipy.optimize import fsolve

    mu, r, alpha = np.array([0.25, 0.75]), np.array([1.0, 3.0]), 4.0
    want = fsolve(lambda q: 2 * mu * (q - r) + alpha * (np.exp(q) / np.exp(q).sum() - mu), r)
    assert np.abs(want - r).min() > 0.1  # the regularizer moves both values
    actions = np.repeat([0, 1], [16, 48])
    obs = np.zeros((64, 4), np.float32)
    data = {"obs": obs, "actions": actions, "rewards": r[actions], "next_obs": obs, "terminated": np.ones(64, bool)}
    agent = DQN("CartPole-v1", seed=0, learning_rate=1e-2, batch_size=512, hidden_sizes=(16,), loss="mse",
                cql_alpha=alpha, backend=backend)
    metrics = {}
    agent.learn_offline(data, gradient_steps=1500, log_every=1500, callback=lambda a, m: metrics.update(m))
    # minibatch noise of the action shares keeps Q within a few 0.01 of the root (r is 0.15–0.44 away)
    np.testing.assert_allclose(agent.backend.q_values(obs[:1])[0], want, atol=0.06)
    assert metrics["losses/cql_loss"] > 0  # logged beside the TD loss


# ---------------------------------------------------------------------------- CLI
def test_cli_train_dqn_and_sac(tmp_path, capsys):
    from policylab.cli import main

    assert main(["train", "dqn", "--env", "CartPole-v1", "--steps", "300", "--out", str(tmp_path / "d"),
                 "--no-progress", "--no-tensorboard", "--set", "learning_starts=100", "--set", "train_freq=50",
                 "--set", "gradient_steps=2"]) == 0
    assert (tmp_path / "d" / "checkpoint.json").is_file()
    assert main(["train", "sac", "--env", "Pendulum-v1", "--steps", "150", "--out", str(tmp_path / "s"),
                 "--no-progress", "--no-tensorboard", "--set", "learning_starts=100", "--set", "batch_size=16",
                 "--set", "hidden_sizes=[8, 8]"]) == 0
    assert main(["train", "sac", "--env", "CartPole-v1", "--steps", "10", "--out", str(tmp_path / "x"),
                 "--no-progress"]) == 2
    assert "continuous" in capsys.readouterr().err


def test_collection_stores_truncation_apart_from_termination():
    import gymnasium as gym

    env = gym.make("CartPole-v1", max_episode_steps=5)
    agent = DQN(env, seed=0, **SMALL_DQN).learn(64)
    buf = agent.storage
    assert buf.truncated[:64, 0].sum() >= 5 and not (buf.truncated & buf.terminated).any()
    # the stored next obs of a truncated row is the final observation, not the reset one
    i = int(np.flatnonzero(buf.truncated[:63, 0])[0])
    assert not np.array_equal(buf.next_obs[i, 0], buf.obs[i + 1, 0])


# ---------------------------------------------------------------------------- presets
ISSUE_PRESETS = [("dqn", "CartPole-v1"), ("dqn", "Acrobot-v1"), ("dqn", "MountainCar-v0"), ("dqn", "LunarLander-v3"),
                 ("sac", "Pendulum-v1"), ("sac", "MountainCarContinuous-v0"), ("sac", "Hopper-v5"),
                 ("sac", "HalfCheetah-v5"), ("sac", "Walker2d-v5")]


@pytest.mark.parametrize("algo, env", ISSUE_PRESETS)
def test_issue_presets_exist_and_train(algo, env):
    """Every preset the issue lists is bundled and trains a few updates on its env (LunarLander
    needs Box2D, the v5 tasks MuJoCo: skipped where they are not installed)."""
    from policylab.deep.config import load_preset

    if env == "LunarLander-v3":
        pytest.importorskip("Box2D")
    if env.endswith("-v5"):
        pytest.importorskip("mujoco")
    values = load_preset(env, algo)
    assert values, f"{env} has no {algo} preset"
    cls = DQN if algo == "dqn" else SAC
    agent = cls(env, seed=0, config=values, buffer_size=1000, learning_starts=50)
    for k, v in values.items():
        if k not in ("buffer_size", "learning_starts"):
            assert getattr(agent.config, k) == (tuple(v) if isinstance(v, list) else v), k
    agent.learn(60 + 2 * agent.config.train_freq * agent.n_envs)
    assert np.isfinite(agent.evaluate(1).mean)


def test_learn_offline_uses_the_agents_gamma_not_the_buffers():
    """A self-loop with reward 1 never terminating: Q → 1/(1 − γ) for the AGENT's γ (0.5 → 2),
    also when the dataset is a ReplayBuffer built with another γ (0.9 would give 10)."""
    obs = np.zeros((64, 4), np.float32)
    data = {"obs": obs, "actions": np.zeros(64, int), "rewards": np.ones(64), "next_obs": obs,
            "terminated": np.zeros(64, bool)}
    buf = ReplayBuffer.from_arrays(**data, n_actions=2, gamma=0.9)
    agent = DQN("CartPole-v1", seed=0, gamma=0.5, learning_rate=3e-3, batch_size=32, hidden_sizes=(16,), loss="mse",
                cql_alpha=0.0)
    agent.learn_offline(buf, gradient_steps=2000, target_update_every=100)
    assert agent.backend.q_values(obs[:1])[0, 0] == pytest.approx(2.0, abs=0.05)
    assert buf.gamma == 0.9  # the caller's buffer is left as it was
