"""One-step online actor-critic: the lecture's 3-step update checked parameter by parameter, smoke, resume."""

import copy

import numpy as np
import pytest
import torch

from policylab.deep import ActorCritic


def test_one_update_is_the_lectures_three_step_rule():
    a_lr, c_lr, gamma = 0.05, 0.1, 0.9
    agent = ActorCritic("CartPole-v1", seed=0, optimizer="sgd", actor_learning_rate=a_lr,
                        critic_learning_rate=c_lr, gamma=gamma, steps_per_iteration=1)
    agent._obs = agent._reset_env()
    s = torch.from_numpy(agent._obs)  # (1, 4)
    old = copy.deepcopy(agent.net)
    rng_state = agent.torch_rng.get_state()
    agent._train_iteration(10**6)
    s_next = torch.from_numpy(agent._obs)  # CartPole's first step never ends an episode
    a = old.head.sample(old.policy_params(s), torch.Generator().set_state(rng_state))
    # 1. δ = r + γ V(s') − V(s) with the pre-update critic; r = 1 in CartPole
    with torch.no_grad():
        delta = 1.0 + gamma * old.value(s_next) - old.value(s)
    # 2. w ← w + α_w δ ∇_w V(s)      3. θ ← θ + α_θ δ ∇_θ log π(a|s)
    old.zero_grad()
    old.value(s).sum().backward()
    old.head.log_prob(old.policy_params(s), a).sum().backward()
    for (name, p_old), p_new in zip(old.named_parameters(), agent.net.parameters()):
        lr = c_lr if name.startswith("critic") else a_lr
        expected = p_old + lr * delta * p_old.grad
        torch.testing.assert_close(p_new, expected, rtol=1e-5, atol=1e-7, msg=name)
    assert abs(delta.item()) > 1e-3


def test_smoke_discrete_and_continuous():
    metrics = []
    agent = ActorCritic("CartPole-v1", seed=0, n_envs=2, steps_per_iteration=64)
    agent.learn(256, callback=lambda a, m: metrics.append(m))
    assert agent.num_steps == 256 and agent.iteration == 2
    assert {"losses/policy_loss", "losses/value_loss", "losses/entropy",
            "losses/explained_variance"} <= set(metrics[0])
    assert agent.act(np.zeros(4, np.float32)) in (0, 1)
    cont = ActorCritic("Pendulum-v1", seed=0, steps_per_iteration=32)
    cont.learn(64)
    assert cont.act(np.zeros(3, np.float32)).shape == (1,)


def test_truncation_bootstraps_from_the_final_observation():
    # CartPole with a 3-step time limit: every episode is truncated, never terminated, so each
    # TD target bootstraps; V(final obs) must be read from info["final_obs"], not the reset obs.
    import gymnasium as gym

    env = gym.make("CartPole-v1", max_episode_steps=3)
    agent = ActorCritic(env, seed=0, steps_per_iteration=3, optimizer="sgd",
                        actor_learning_rate=1e-9, critic_learning_rate=1e-9)
    agent._obs = agent._reset_env()
    seen = []
    orig = agent.net.value

    def spy(x):
        seen.append(x.detach().numpy().copy())
        return orig(x)

    agent.net.value = spy
    agent._train_iteration(10**6)
    # third call evaluates [s_2, s_3]; s_3 is the final obs of the truncated episode
    final_obs_used = seen[2][1]
    assert not np.allclose(final_obs_used, agent._obs[0])  # not the reset observation
    assert np.allclose(seen[2][0], seen[1][1])  # s_2 is the successor from the previous step


def test_resume_continues_identically(tmp_path):
    a = ActorCritic("CartPole-v1", seed=5, steps_per_iteration=50)
    a.learn(100)
    a.save(tmp_path / "ck")
    a.learn(300)
    b = ActorCritic.load(tmp_path / "ck")
    b.learn(300)
    for (k, pa), pb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(pa, pb), k


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="optimizer"):
        ActorCritic("CartPole-v1", optimizer="rmsprop")
    with pytest.raises(ValueError, match="critic_learning_rate"):
        ActorCritic("CartPole-v1", critic_learning_rate=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        ActorCritic("CartPole-v1", gamma=float("inf"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_actor_critic_learns_cartpole(seed):
    # one-step online updates averaged over 8 parallel transitions (n_envs=8);
    # measured on these seeds: deterministic 20-episode evaluation mean 500.0 / 500.0 / 500.0
    # after 60k steps
    agent = ActorCritic("CartPole-v1", seed=seed, n_envs=8)
    agent.learn(60_000)
    assert agent.evaluate(episodes=20).mean >= 400.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_fully_online_actor_critic_learns_cartpole(seed):
    # the lecture's rule verbatim: one transition per update (n_envs=1), default step sizes;
    # measured on these seeds: deterministic evaluation mean 500.0 / 500.0 after 100k steps
    agent = ActorCritic("CartPole-v1", seed=seed)
    agent.learn(100_000)
    assert agent.evaluate(episodes=20).mean >= 400.0
