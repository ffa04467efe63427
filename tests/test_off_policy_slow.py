"""Slow learning runs of DQN and SAC with the bundled rl-zoo presets (pytest -m slow)."""

from __future__ import annotations

import numpy as np
import pytest

from policylab.deep.config import load_preset
from policylab.deep.dqn import DQN
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
