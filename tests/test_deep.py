"""policylab.deep infrastructure, PPO and A2C: fast tests (the learning runs are in test_deep_slow.py)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch

from policylab.deep import A2C, PPO, Agent, load_agent
from policylab.deep.config import PRESET_DIR, load_preset, make_config
from policylab.deep.distributions import CategoricalHead, GaussianHead, head_for
from policylab.deep.ppo import PPOConfig
from policylab.deep.replay import ReplayBuffer
from policylab.deep.storage import RolloutStorage
from policylab.deep.vec_env import make_vec_env
from policylab.io import STANDARD_KEYS, CheckpointError, load_checkpoint, save_checkpoint

SMALL_PPO = {"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 2, "hidden_sizes": (16, 16)}
SMALL_A2C = {"n_envs": 2, "n_steps": 5, "hidden_sizes": (16, 16)}


def _params_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# ---------------------------------------------------------------- policy heads vs torch.distributions

def test_categorical_head_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 5, generator=g) * 3
    actions = torch.randint(0, 5, (50,), generator=g)
    ref = torch.distributions.Categorical(logits=logits)
    head = CategoricalHead(5)
    logp, ent = head.log_prob_entropy(logits, actions)
    torch.testing.assert_close(logp, ref.log_prob(actions))
    torch.testing.assert_close(ent, ref.entropy())
    torch.testing.assert_close(head.log_prob(logits, actions), ref.log_prob(actions))
    assert torch.equal(head.mode(logits), logits.argmax(-1))
    # sampling frequencies match the softmax probabilities
    many = head.sample(logits[:1].expand(20_000, 5), torch.Generator().manual_seed(1))
    freq = torch.bincount(many, minlength=5).double() / 20_000
    assert torch.allclose(freq, ref.probs[0].double(), atol=0.015)


def test_gaussian_head_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, log_std = torch.randn(40, 3, generator=g), torch.randn(3, generator=g) * 0.5
    actions = torch.randn(40, 3, generator=g)
    ref = torch.distributions.Normal(mean, log_std.exp())
    head = GaussianHead(3)
    logp, ent = head.log_prob_entropy((mean, log_std), actions)
    torch.testing.assert_close(logp, ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(ent, ref.entropy().sum(-1))
    samples = head.sample((mean[:1].expand(20_000, 3), log_std), torch.Generator().manual_seed(2))
    assert torch.allclose(samples.mean(0), mean[0], atol=0.05)
    assert torch.allclose(samples.std(0), log_std.exp(), rtol=0.05)


def test_head_for_spaces():
    assert isinstance(head_for(gym.spaces.Discrete(3)), CategoricalHead)
    assert head_for(gym.spaces.Box(-1, 1, (2,))).dim == 2
    with pytest.raises(ValueError, match="unsupported action space"):
        head_for(gym.spaces.MultiBinary(3))


def test_flatten_parameters_gives_the_same_gradients_and_updates():
    from policylab.deep.networks import PolicyValueNet, flatten_parameters

    torch.manual_seed(0)
    ref = PolicyValueNet(3, CategoricalHead(2), (8, 8))
    net = PolicyValueNet(3, CategoricalHead(2), (8, 8))
    net.load_state_dict(ref.state_dict())
    flat = flatten_parameters(net)
    assert _params_equal(ref, net) and flat.numel() == sum(p.numel() for p in ref.parameters())
    x = torch.randn(10, 3)
    opt_ref = torch.optim.Adam(ref.parameters(), lr=0.1)
    opt = torch.optim.Adam([flat], lr=0.1)
    for _ in range(3):  # gradients accumulate into the views, are cleared, and Adam moves the views
        for model, o in ((ref, opt_ref), (net, opt)):
            loss = model.policy_params(x).pow(2).sum() + model.value(x).sum()
            if model is ref:
                o.zero_grad()
            else:
                flat.grad.zero_()
            loss.backward()
            o.step()
        for p, q in zip(ref.parameters(), net.parameters()):
            torch.testing.assert_close(p.grad, q.grad)
        torch.testing.assert_close(torch.cat([p.detach().reshape(-1) for p in ref.parameters()]), flat.detach())
    assert all(q.data_ptr() >= flat.data_ptr() for q in net.parameters())  # still views


# ---------------------------------------------------------------- rollout storage and truncation

def test_rollout_bootstraps_truncation_from_true_final_observation():
    """next_values at a truncated row = V(final obs), checked by replaying the env independently."""
    env = gym.make("CartPole-v1", max_episode_steps=7)
    agent = PPO(env, seed=3, n_envs=2, n_steps=20, batch_size=40, hidden_sizes=(8,))
    agent._obs = agent._reset_env()
    buf = RolloutStorage.allocate(20, 2, 4, (), True)
    agent.collect_rollout(buf)
    assert buf.truncated.any()
    for i in range(2):  # replay sub-env i with its seed and the recorded actions
        ref = gym.make("CartPole-v1", max_episode_steps=7)
        obs, _ = ref.reset(seed=3 + i)
        for t in range(20):
            np.testing.assert_array_equal(buf.obs[t, i], obs)
            obs, _, term, trunc, _ = ref.step(int(buf.actions[t, i]))
            assert (term, trunc) == (buf.terminated[t, i], buf.truncated[t, i])
            with torch.no_grad():
                v_next = agent.net.value(torch.as_tensor(obs[None])).item()
            if not term:  # incl. truncated rows: V(true final obs), never V(reset obs)
                assert buf.next_values[t, i] == pytest.approx(v_next, abs=1e-6)
            if term or trunc:
                obs, _ = ref.reset()
    assert agent.num_steps == 40


# ---------------------------------------------------------------- smoke runs, logs

@pytest.mark.parametrize("cls,env,hp", [
    (PPO, "CartPole-v1", SMALL_PPO),
    (PPO, "Pendulum-v1", {**SMALL_PPO, "target_kl": 0.02, "clip_range_vf": 0.2, "anneal_lr": True}),
    (A2C, "CartPole-v1", SMALL_A2C),
    (A2C, "Pendulum-v1", {**SMALL_A2C, "optimizer": "adam", "normalize_advantage": True}),
])
def test_smoke_learn_logs_and_evaluates(tmp_path, cls, env, hp):
    agent = cls(env, seed=0, **hp)
    agent.learn(512, log_dir=tmp_path, tensorboard=True)  # Pendulum: 2 envs finish 200-step episodes
    assert agent.num_steps >= 512
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    assert rows and set(STANDARD_KEYS) <= set(rows[0])
    for key in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl",
                "losses/clip_fraction", "charts/SPS"):
        assert all(math.isfinite(float(r[key])) for r in rows), key
    assert any(r["charts/episodic_return"] for r in rows)  # episodes finished and were logged
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    stats = agent.evaluate(episodes=3)
    assert len(stats.returns) == 3 and math.isfinite(stats.mean)
    assert float(np.mean(stats.returns)) == pytest.approx(stats.mean)


def test_evaluate_matches_manual_episodes():
    agent = PPO("Pendulum-v1", seed=1, **SMALL_PPO)
    stats = agent.evaluate(episodes=2, seed=50)
    for i in range(2):
        env = gym.make("Pendulum-v1")
        obs, _ = env.reset(seed=50 + i)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(agent.act(obs))
            total += r
            done = term or trunc
        assert stats.returns[i] == pytest.approx(total, rel=1e-6)
    assert stats.lengths == [200, 200]


def test_act_shapes_modes_and_bounds():
    agent = PPO("Pendulum-v1", seed=0, log_std_init=2.0, **SMALL_PPO)
    obs = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    a = agent.act(obs, deterministic=False)
    assert a.shape == (64, 1) and a.min() >= -2.0 and a.max() <= 2.0
    assert np.any(np.abs(a) == 2.0)  # σ = e² is wide: some samples were clipped to the bounds
    single = agent.act(obs[0])
    assert single.shape == (1,)
    disc = PPO("CartPole-v1", seed=0, **SMALL_PPO)
    o = np.zeros((5, 4), dtype=np.float32)
    with torch.no_grad():
        ref = disc.net.policy_params(torch.as_tensor(o)).argmax(-1).numpy()
    np.testing.assert_array_equal(disc.act(o), ref)
    with pytest.raises(ValueError, match="obs must have shape"):
        disc.act(np.zeros(3))


def test_same_seed_same_numbers_different_seed_differs():
    a, b, c = (PPO("CartPole-v1", seed=s, **SMALL_PPO).learn(128) for s in (0, 0, 1))
    assert _params_equal(a.net, b.net)
    assert not _params_equal(a.net, c.net)


# ---------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("cls,env,hp", [(PPO, "CartPole-v1", SMALL_PPO), (PPO, "Pendulum-v1", SMALL_PPO),
                                        (A2C, "Acrobot-v1", SMALL_A2C)])
def test_save_load_act_identical(tmp_path, cls, env, hp):
    agent = cls(env, seed=0, **hp).learn(128)
    agent.save(tmp_path / "ckpt")
    loaded = cls.load(tmp_path / "ckpt")
    assert _params_equal(agent.net, loaded.net) and loaded.num_steps == agent.num_steps
    obs = np.random.default_rng(1).normal(size=(32, agent.obs_dim)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs), loaded.act(obs))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    np.testing.assert_array_equal(agent.act(obs, False, g1), loaded.act(obs, False, g2))
    assert type(load_agent(tmp_path / "ckpt")) is cls
    assert not list((tmp_path / "ckpt").glob("*.pkl")) and not list((tmp_path / "ckpt").glob("*.pt"))


@pytest.mark.parametrize("cls,env,hp,total", [
    (PPO, "CartPole-v1", {**SMALL_PPO, "anneal_lr": True, "anneal_clip": True}, 512),
    (PPO, "Pendulum-v1", {**SMALL_PPO, "n_steps": 64, "batch_size": 64, "target_kl": 0.05}, 640),
    (PPO, "CartPole-v1", {**SMALL_PPO, "anneal_lr": True, "backend": "torch"}, 512),
    (PPO, "Pendulum-v1", {**SMALL_PPO, "n_steps": 64, "batch_size": 64, "target_kl": 0.05, "backend": "torch"}, 640),
    (A2C, "CartPole-v1", {**SMALL_A2C, "anneal_lr": True}, 400),
])
def test_resume_equals_uninterrupted(tmp_path, cls, env, hp, total):
    """Stop half-way, save, load in a fresh agent, continue: same weights, optimizer, RNG, logs."""
    full = cls(env, seed=7, **hp)
    full_metrics = []
    full.learn(total, callback=lambda ag, m: full_metrics.append(m))
    half = cls(env, seed=7, **hp)
    half.learn(total, callback=lambda ag, m: ag.num_steps < total // 2)
    half.save(tmp_path / "run")
    resumed = cls.load(tmp_path / "run")
    assert 0 < resumed.num_steps < total
    rest = []
    resumed.learn(total, callback=lambda ag, m: rest.append(m))
    assert resumed.num_steps == full.num_steps
    assert _params_equal(full.net, resumed.net)
    s1, s2 = full.optimizers["main"].state_dict()["state"], resumed.optimizers["main"].state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg" if cls is PPO else "square_avg"],
                           s2[k]["exp_avg" if cls is PPO else "square_avg"]) for k in s1)
    drop = ("charts/SPS",)
    tail = [{k: v for k, v in m.items() if k not in drop} for m in full_metrics[-len(rest):]]
    assert tail == [{k: v for k, v in m.items() if k not in drop} for m in rest]
    assert list(full.recent_returns) == list(resumed.recent_returns)


def test_resume_with_fast_vector_cartpole(tmp_path):
    from policylab.deep.vector_cartpole import VectorCartPole

    hp = {**SMALL_PPO, "n_envs": 4}
    full = PPO(VectorCartPole(4), seed=2, **hp).learn(512)
    half = PPO(VectorCartPole(4), seed=2, **hp)
    half.learn(512, callback=lambda ag, m: ag.num_steps < 256)
    half.save(tmp_path / "run")
    resumed = PPO.load(tmp_path / "run", env=VectorCartPole(4)).learn(512)
    assert _params_equal(full.net, resumed.net)
    assert full.evaluate(3).returns == resumed.evaluate(3).returns  # eval env built from the spec id


def test_checkpoint_corruption_detected(tmp_path):
    PPO("CartPole-v1", seed=0, **SMALL_PPO).learn(64).save(tmp_path / "c")
    weights = next((tmp_path / "c").glob("weights-*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        PPO.load(tmp_path / "c")
    weights.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        PPO.load(tmp_path / "c")
    (tmp_path / "c" / "checkpoint.json").write_text('{"format": "policylab-checkpoint-v1", "weights"')
    with pytest.raises(CheckpointError, match="invalid JSON"):
        PPO.load(tmp_path / "c")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        PPO.load(tmp_path / "nowhere")


def test_checkpoint_wrong_algorithm_and_tampered_weights(tmp_path):
    PPO("CartPole-v1", seed=0, **SMALL_PPO).save(tmp_path / "p")
    with pytest.raises(CheckpointError, match="'ppo' checkpoint"):
        A2C.load(tmp_path / "p")
    # a well-formed checkpoint whose tensors do not fit the network
    tensors, meta = load_checkpoint(tmp_path / "p")
    tensors["net/actor.0.weight"] = torch.zeros(3, 3)
    meta = {k: v for k, v in meta.items() if k not in ("format", "weights", "sha256")}
    save_checkpoint(tmp_path / "p", tensors, meta)
    with pytest.raises(CheckpointError, match="does not fit"):
        PPO.load(tmp_path / "p")


def test_checkpoint_writes_are_atomic_and_json_only(tmp_path):
    agent = PPO("CartPole-v1", seed=0, **SMALL_PPO).learn(64)
    for _ in range(2):
        agent.learn(agent.num_steps + 64).save(tmp_path / "c")
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(files) == 2 and files[0] == "checkpoint.json"  # one weights file, no temp files left
    meta = json.loads((tmp_path / "c" / "checkpoint.json").read_text())
    assert meta["algo"] == "ppo" and meta["config"]["n_envs"] == 2 and meta["env_id"] == "CartPole-v1"


# ---------------------------------------------------------------- bad input

def test_bad_hyperparameters_rejected_before_work():
    for bad, match in [({"learning_rate": float("nan")}, "learning_rate must be finite"),
                       ({"clip_range": float("inf")}, "clip_range must be finite"),
                       ({"gamma": 1.5}, "gamma=1.5 must be in"),
                       ({"batch_size": 1000}, "batch_size=1000"),
                       ({"n_steps": 0}, "n_steps=0"),
                       ({"learning_rte": 1e-3}, "unknown hyperparameter"),
                       ({"anneal_lr": "yes"}, "anneal_lr must be true/false"),
                       ({"activation": "sigmoid"}, "activation")]:
        with pytest.raises(ValueError, match=match):
            PPO("CartPole-v1", seed=0, **{**SMALL_PPO, **bad})
    with pytest.raises(ValueError, match="target_kl"):
        PPO("CartPole-v1", **{**SMALL_PPO, "target_kl": -1})
    with pytest.raises(ValueError, match="optimizer"):
        A2C("CartPole-v1", optimizer="sgd")
    with pytest.raises(ValueError, match="seed must be an int"):
        PPO("CartPole-v1", seed=1.5)
    with pytest.raises(ValueError, match="total_steps"):
        PPO("CartPole-v1", **SMALL_PPO).learn(float("nan"))


def test_bad_envs_rejected():
    with pytest.raises(ValueError, match="unknown env id 'NoSuchEnv-v0'"):
        PPO("NoSuchEnv-v0")
    with pytest.raises(ValueError, match="1-d Box"):
        PPO("FrozenLake-v1")
    nxt = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")  # NEXT_STEP autoreset
    with pytest.raises(ValueError, match="SAME_STEP"):
        PPO(nxt)

    @dataclass
    class DiscreteOnlyConfig:
        n_envs: int = 1

    class DiscreteOnly(Agent):
        algo = "discrete-only"
        config_class = DiscreteOnlyConfig
        discrete_only = True

    with pytest.raises(ValueError, match="discrete actions only.*Pendulum-v1"):
        DiscreteOnly("Pendulum-v1")


def test_make_vec_env_accepts_env_instance_and_vector_env():
    single = gym.make("CartPole-v1")
    venv = make_vec_env(single, 3)
    assert venv.num_envs == 3 and venv.envs[0] is single
    from policylab.deep.vector_cartpole import VectorCartPole

    fast = VectorCartPole(4)
    assert make_vec_env(fast, 99) is fast


# ---------------------------------------------------------------- configs and presets

@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
def test_presets_build_valid_configs(preset):
    assert {"CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0"} <= {
        p.stem for p in PRESET_DIR.glob("*.yaml")}
    from policylab.config import load_yaml
    from policylab.deep.registry import ALGORITHMS, algorithm_class

    sections = load_yaml(PRESET_DIR / f"{preset}.yaml")
    assert sections and set(sections) <= set(ALGORITHMS), f"{preset}: unknown sections {set(sections)}"
    for algo in sections:  # every section builds the config of its algorithm
        values = load_preset(preset, algo)
        cfg = make_config(algorithm_class(algo).config_class, values)
        for k, v in values.items():
            v = tuple(v) if isinstance(v, list) else v
            assert getattr(cfg, k) == pytest.approx(v) if isinstance(v, float) else getattr(cfg, k) == v


def test_config_coerces_yaml_values(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("n_steps: 1e2\nlearning_rate: 3e-4\nhidden_sizes: [32, 32]\ntarget_kl: null\n")
    cfg = make_config(PPOConfig, str(path))
    assert cfg.n_steps == 100 and cfg.learning_rate == 3e-4 and cfg.hidden_sizes == (32, 32)
    with pytest.raises(ValueError, match="n_steps must be an integer"):
        make_config(PPOConfig, {"n_steps": 2.5})


# ---------------------------------------------------------------- CLI

def test_cli_train_resume_eval(tmp_path, capsys):
    from policylab.cli import main

    out = str(tmp_path / "run")
    args = ["train", "ppo", "--env", "CartPole-v1", "--seed", "1", "--out", out, "--no-progress",
            "--no-tensorboard", "--checkpoint-every", "1", "--set", "n_epochs=2", "--set", "hidden_sizes=[16]"]
    assert main(args + ["--steps", "256"]) == 0          # bundled preset: 8 envs × 32 steps
    assert main(args + ["--steps", "256"]) == 2          # refuses to overwrite
    assert main(args + ["--steps", "512", "--resume"]) == 0
    assert main(["eval", out, "--episodes", "3"]) == 0
    text = capsys.readouterr().out
    assert "preset" in text and "resuming ppo on CartPole-v1 from step 256" in text and "return: mean" in text
    with open(f"{out}/progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["global_step"]) for r in rows] == [256, 512]
    direct = PPO("CartPole-v1", seed=1, config=load_preset("CartPole-v1", "ppo"), n_epochs=2,
                 hidden_sizes=(16,)).learn(512)
    assert _params_equal(direct.net, load_agent(out).net)   # CLI resume == uninterrupted run


def test_cli_bad_input_exits_2(tmp_path, capsys):
    from policylab.cli import main

    base = ["--steps", "64", "--out", str(tmp_path / "x"), "--no-progress"]
    assert main(["train", "ppo", "--env", "NoSuchEnv-v0", *base]) == 2
    assert main(["train", "a2c", "--env", "CartPole-v1", "--set", "learning_rate=.nan", *base]) == 2
    assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "nan", "--out", str(tmp_path / "y")]) == 2
    assert main(["train", "ppo", "--env", "CartPole-v1", "--resume", *base]) == 2
    assert main(["eval", str(tmp_path / "missing")]) == 2
    PPO("CartPole-v1", **SMALL_PPO).save(tmp_path / "c")
    (tmp_path / "c" / "checkpoint.json").write_text("{oops")
    assert main(["eval", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "unknown env id" in err and "learning_rate must be finite" in err and "invalid JSON" in err
    assert not (tmp_path / "x").exists()  # nothing written before the error


# ---------------------------------------------------------------- hooks for off-policy methods

@dataclass
class _ToyQConfig:
    n_envs: int = 2
    buffer_size: int = 400
    train_freq: int = 4            # env steps per env between updates
    gradient_steps: int = 3        # minibatches per update
    learning_starts: int = 16
    batch_size: int = 8
    learning_rate: float = 1e-3
    gamma: float = 0.9
    epsilon: float = 0.3
    hidden_sizes: tuple[int, ...] = (8,)


class _ToyQ(Agent):
    """A DQN without a target net, written only with the off-policy hooks (no on-policy code touched)."""

    algo = "toy-q"
    config_class = _ToyQConfig
    discrete_only = True
    uses_critic = False  # Q(s, ·) is the actor's output

    def setup(self):
        self.optimizers["main"] = torch.optim.Adam(self.net.parameters(), lr=self.config.learning_rate)
        self.updates = 0

    def make_storage(self):
        return ReplayBuffer(self.config.buffer_size, self.obs_dim, (), True, n_envs=self.n_envs,
                            gamma=self.config.gamma, seed=self.seed)

    def explore(self, obs):  # ε-greedy
        greedy = self.net.policy_params(torch.from_numpy(obs)).argmax(-1).numpy()
        random = self.np_rng.integers(0, self.head.n, size=len(obs))
        return np.where(self.np_rng.random(len(obs)) < self.config.epsilon, random, greedy)

    def collect(self):
        self.collect_transitions(self.storage, self.config.train_freq)

    def update(self):
        c = self.config
        if self.num_steps < c.learning_starts:
            return {}
        for _ in range(c.gradient_steps):
            b = {k: torch.from_numpy(v) for k, v in vars(self.storage.sample(c.batch_size)).items()}
            q = self.net.policy_params(b["obs"]).gather(1, b["actions"][:, None])[:, 0]
            with torch.no_grad():
                target = b["rewards"] + b["discounts"] * self.net.policy_params(b["next_obs"]).amax(-1)
            loss = 0.5 * (q - target).pow(2).mean()
            self.optimizers["main"].zero_grad()
            loss.backward()
            self.optimizers["main"].step()
            self.updates += 1
        return {"losses/value_loss": loss.item()}


def test_off_policy_hooks_schedule_replay_contents_and_determinism():
    agent = _ToyQ(gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, 25), seed=0, n_envs=1, epsilon=1.0)
    agent.learn(40)  # 10 iterations of 4 steps; updates once ≥ 16 steps were collected: 7 × 3
    assert (agent.num_steps, agent.iteration, agent.updates) == (40, 10, 21)
    agent.learn(400)
    buf = agent.storage
    assert len(buf) == 400 and buf.full
    rows = np.roll(np.arange(buf.rows), -buf.pos)  # oldest → newest
    obs, nxt = buf.obs[rows, 0], buf.next_obs[rows, 0]
    term, trunc = buf.terminated[rows, 0], buf.truncated[rows, 0]
    only_trunc = trunc & ~term  # (a step may be both: terminal on the time limit's last step)
    assert term.any() and only_trunc.any()
    # a terminal s' is the true final observation (outside CartPole's bounds), not the reset one
    x, theta = nxt[term][:, 0], nxt[term][:, 2]
    assert np.all((np.abs(x) > 2.4) | (np.abs(theta) > 12 * 2 * math.pi / 360))
    # a truncated s' is the final observation too (time limit inside the bounds): not the next row's reset s
    assert not np.allclose(nxt[:-1][only_trunc[:-1]], obs[1:][only_trunc[:-1]])
    # elsewhere s' is the next row's s
    cont = ~(term | trunc)[:-1]
    np.testing.assert_array_equal(nxt[:-1][cont], obs[1:][cont])
    # every draw comes from the agent's seeded streams
    a, b = _ToyQ("CartPole-v1", seed=3).learn(120), _ToyQ("CartPole-v1", seed=3).learn(120)
    assert _params_equal(a.net, b.net) and np.array_equal(a.storage.obs, b.storage.obs)


def test_cli_and_readme_algorithm_lists_come_from_the_registry(capsys):
    from pathlib import Path

    from policylab.cli import build_parser
    from policylab.deep.registry import ALGORITHMS, algorithm_class

    for name in ALGORITHMS:
        assert algorithm_class(name).algo == name
    with pytest.raises(SystemExit):
        build_parser(["train"]).parse_args(["train", "--help"])
    assert "{" + ",".join(ALGORITHMS) + "}" in capsys.readouterr().out
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"policylab train   {'|'.join(ALGORITHMS)} --env" in readme
