"""Config plumbing for the deep agents: re-exported from :mod:`policylab.config`, the one config
system shared by ``train``, ``learn``, ``llm`` and ``sweep`` (see its docstring), plus
:class:`AgentOptions`, the fields every deep algorithm's config inherits."""

import dataclasses
from typing import ClassVar

from policylab.config import (
    PRESET_DIR,
    check,
    check_fields,
    load_preset,
    make_config,
    preset_path,
)

__all__ = ["PRESET_DIR", "AgentOptions", "check", "check_fields", "load_preset", "make_config", "preset_path"]


@dataclasses.dataclass
class AgentOptions:
    """Fields every algorithm's config inherits (one level): the default run length, how the env is
    vectorized, SB3 VecNormalize-style normalization (``policylab.deep.normalize``) and network
    options. Defaults reproduce the behaviour of checkpoints written before these fields existed."""

    RANGES: ClassVar[dict] = {"n_timesteps": "[1, 1e12]", "vectorization": ("sync", "async", "fast"),
                              "clip_obs": "(0, inf)", "clip_reward": "(0, inf)"}

    n_timesteps: int | None = None         # default total env steps of learn() (rl-zoo's n_timesteps)
    vectorization: str = "sync"            # sync: SyncVectorEnv | async: AsyncVectorEnv (subprocesses) | fast: compiled env
    normalize_obs: bool = False            # observations ↦ clip((o − μ)/√(σ² + ε), ±clip_obs), running μ, σ²
    normalize_reward: bool = False         # rewards ↦ clip(r/√(Var[G] + ε), ±clip_reward), G the discounted return
    clip_obs: float = 10.0                 # bound of normalized observations (SB3: 10)
    clip_reward: float = 10.0              # bound of scaled rewards (SB3: 10)
    ortho_init: bool = True                # orthogonal init (gains √2 hidden, 0.01 policy, 1 value); False: torch default
    shared_trunk: bool = False             # actor and critic heads on one MLP body (PPO/A2C; torch backend)
