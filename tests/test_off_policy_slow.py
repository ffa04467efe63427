"""Slow learning runs of DQN and SAC with the bundled rl-zoo presets, and offline DQN/CQL from a
trained agent's log (pytest -m slow)."""

from __future__ import annotations

import numpy as np
import pytest

from policylab.deep.config import load_preset
from policylab.deep.dqn import DQN
from policylab.deep.replay import ReplayBuffer
from policylab.deep.sac import SAC

pytestmark = pytest.mark.slow


def _first_solving_eval(agent, total: int, every: int, threshold: float, episodes: int = 10):
    """Train up to ``total`` steps, evaluating at the first iteration past each multiple of
    ``every``; return (steps, eval) at the first eval ≥ threshold, else (None, best eval)."""
    state = {"next": every, "best": -np.inf, "at": None}

    def cb(a, _):
        if a.num_steps < state["next"]:
            return True
        state["next"] = (a.num_steps // every + 1) * every
        score = a.evaluate(episodes).mean
        state["best"] = max(state["best"], score)
        if score >= threshold:
            state["at"] = a.num_steps
            return False
        return True

    agent.learn(total, callback=cb)
    return state["at"], state["best"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dqn_solves_cartpole_within_60k_steps(seed):
    agent = DQN("CartPole-v1", seed=seed, config=load_preset("CartPole-v1", "dqn"))
    at, best = _first_solving_eval(agent, 60_000, 2048, 475.0)
    assert at is not None, f"seed {seed}: best eval {best:.1f} < 475 after 60k steps"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sac_reaches_minus_200_on_pendulum_within_20k_steps(seed):
    agent = SAC("Pendulum-v1", seed=seed, config=load_preset("Pendulum-v1", "sac"))
    at, best = _first_solving_eval(agent, 20_000, 1000, -200.0)
    assert at is not None, f"seed {seed}: best eval {best:.1f} < -200 after 20k steps"


@pytest.mark.parametrize("seed", [0, 1])
def test_offline_cql_from_a_trained_agents_log_scores_within_10_percent(seed):
    """The logging agent: DQN with the CartPole preset, trained until its first 10-episode greedy
    evaluation ≥ 475 (≤ 60k steps). The log: 20k transitions of that agent acting ε-greedily with
    ε = 0.1 (its ``explore``, on its training env). From the log alone, ``learn_offline`` with CQL
    (α = 1, the default; 5k gradient steps) must score ≥ 0.9 × the agent's greedy score on the same
    10 evaluation episodes. (Plain offline DQN, α = 0, scores 9–20 on seeds 0–2 but 435–500 on
    seed 3, whose log holds 57 failures: not asserted, it depends on the log — see the README.)"""
    agent = DQN("CartPole-v1", seed=seed, config=load_preset("CartPole-v1", "dqn"))
    at, best = _first_solving_eval(agent, 60_000, 2048, 475.0)
    assert at is not None, f"seed {seed}: the logging agent did not solve CartPole (best eval {best:.1f})"
    expert = agent.evaluate(10).mean
    log = ReplayBuffer(20_000, agent.obs_dim, n_envs=1, seed=seed)
    agent.exploration_rate = 0.1
    agent.collect_transitions(log, 20_000)
    offline = DQN("CartPole-v1", seed=seed, hidden_sizes=(256, 256), learning_rate=1e-3, batch_size=64)
    offline.learn_offline(log, 5_000, target_update_every=500)
    score = offline.evaluate(10).mean  # the same 10 start states as ``expert``
    assert score >= 0.9 * expert, f"seed {seed}: CQL {score:.1f} vs logging agent {expert:.1f}"
