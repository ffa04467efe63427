"""Learning runs of PPO and A2C (``pytest -m slow tests/test_deep_slow.py``).

Stated thresholds (deterministic evaluation = greedy / mean action, fresh env seeds):
- PPO, CartPole-v1 preset (rl-zoo), seeds 0–4, fast VectorCartPole for training:
  some evaluation (20 episodes, every 5,120 steps) reaches mean ≥ 475 within 100k steps.
- A2C, CartPole-v1 preset (rl-zoo: 8 envs, 5 steps, RMSprop 7e-4), seeds 0–2:
  some evaluation (10 episodes, every 25k steps) reaches mean ≥ 475 within 150k steps.
- PPO, Pendulum-v1 preset (rl-zoo minus gSDE), seeds 0–1:
  some evaluation (10 episodes, every 24,576 steps) reaches mean ≥ −300 within 100k steps
  (a random policy scores about −1,200; the best policies about −150).
"""

from __future__ import annotations

import pytest

from policylab.deep import A2C, PPO
from policylab.deep.config import load_preset

pytestmark = pytest.mark.slow


def _train_until(agent, total: int, every: int, episodes: int, threshold: float) -> list:
    """learn(total) with an evaluation every ``every`` steps; stops at the first ≥ threshold."""
    evals: list = []
    next_eval = [every]

    def callback(ag, metrics):
        if ag.num_steps >= next_eval[0]:
            next_eval[0] += every
            evals.append((ag.num_steps, ag.evaluate(episodes).mean))
            return evals[-1][1] < threshold
        return True

    agent.learn(total, callback=callback)
    return evals


@pytest.mark.parametrize("seed", range(5))
def test_ppo_solves_cartpole(seed):
    from policylab.deep.vector_cartpole import VectorCartPole

    agent = PPO(VectorCartPole(8), seed=seed, config=load_preset("CartPole-v1", "ppo"))
    evals = _train_until(agent, 100_000, 5_120, 20, 475.0)
    assert evals[-1][1] >= 475.0, evals
    assert agent.evaluate(20, seed=123).mean >= 400.0  # still good on other start states


@pytest.mark.parametrize("seed", range(3))
def test_a2c_learns_cartpole(seed):
    agent = A2C("CartPole-v1", seed=seed, config=load_preset("CartPole-v1", "a2c"))
    evals = _train_until(agent, 150_000, 25_000, 10, 475.0)
    assert evals[-1][1] >= 475.0, evals


@pytest.mark.parametrize("seed", range(2))
def test_ppo_learns_pendulum(seed):
    agent = PPO("Pendulum-v1", seed=seed, config=load_preset("Pendulum-v1", "ppo"))
    evals = _train_until(agent, 100_000, 24_576, 10, -300.0)
    assert evals[-1][1] >= -300.0, evals
