"""The algorithm registry: CLI/checkpoint name → ``"module:Class"``, imported lazily.

This is the one list of policylab.deep algorithms: ``policylab train``'s choices, ``load_agent``'s
dispatch on the name recorded in a checkpoint and the README's lists (checked by a test) all read
it. A new algorithm adds one line here. Importing this module does not import torch.
"""

from __future__ import annotations

import importlib

from policylab.errors import InputError

__all__ = ["ALGORITHMS", "algorithm_class"]

ALGORITHMS = {
    "reinforce": "policylab.deep.reinforce:REINFORCE",
    "actor-critic": "policylab.deep.actor_critic:ActorCritic",
    "a2c": "policylab.deep.a2c:A2C",
    "ppo": "policylab.deep.ppo:PPO",
    "dqn": "policylab.deep.dqn:DQN",
    "sac": "policylab.deep.sac:SAC",
}


def algorithm_class(name: str) -> type:
    """The Agent subclass registered under ``name`` (its module is imported on first use)."""
    if name not in ALGORITHMS:
        raise InputError(f"unknown algorithm {name!r}; choose from {', '.join(ALGORITHMS)}")
    module, cls = ALGORITHMS[name].split(":")
    return getattr(importlib.import_module(module), cls)
