"""Config plumbing shared by every algorithm: build a typed config dataclass from keyword
arguments or a YAML preset, coerce YAML strings/ints, and reject bad values before any work.

Each algorithm defines its own dataclass (fields with a one-line doc and the paper's default)
and may add a ``validate(self)`` method for range checks; :func:`make_config` calls it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path

from policylab.errors import InputError, MissingFileError

__all__ = ["AgentOptions", "check", "check_fields", "load_preset", "make_config", "preset_path"]

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def _coerce(name: str, value, hint):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        if value is None:
            if type(None) in args:
                return None
            raise InputError(f"hyperparameter {name} must not be None")
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"hyperparameter {name} must be true/false, got {value!r}")
    if hint is int:
        if isinstance(value, str):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise InputError(f"hyperparameter {name} must be an integer, got {value!r}")
        return int(value)
    if hint is float:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"hyperparameter {name} must be a number, got {value!r}") from None
        if not math.isfinite(value):
            raise InputError(f"hyperparameter {name} must be finite, got {value}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise InputError(f"hyperparameter {name} must be a string, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, int):
            value = (value,)
        if not isinstance(value, (list, tuple)):
            raise InputError(f"hyperparameter {name} must be a list, got {value!r}")
        return tuple(_coerce(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value))
    return value


def make_config(config_class, config=None, **overrides):
    """``config_class`` instance from an optional base (dataclass instance, dict or YAML path)
    plus keyword overrides. Unknown names, wrong types, NaN/inf and out-of-range values raise
    ValueError naming the hyperparameter."""
    base: dict = {}
    if isinstance(config, (str, Path)):
        base = load_preset(config)
    elif dataclasses.is_dataclass(config):
        base = dataclasses.asdict(config)
    elif isinstance(config, dict):
        base = dict(config)
    elif config is not None:
        raise InputError(f"config must be a {config_class.__name__}, dict or YAML path, got {type(config).__name__}")
    values = {**base, **overrides}
    hints = typing.get_type_hints(config_class)
    names = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise InputError(f"unknown hyperparameter(s) {', '.join(unknown)} for "
                         f"{config_class.__name__}; valid: {', '.join(names)}")
    cfg = config_class(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})
    if isinstance(cfg, AgentOptions):
        cfg.validate_options()
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def check(cond: bool, name: str, value, requirement: str) -> None:
    """Raise ValueError("hyperparameter <name>=<value> must be <requirement>") unless cond."""
    if not cond:
        raise InputError(f"hyperparameter {name}={value!r} must be {requirement}")


def check_fields(cfg, *, at_least_one=(), positive=(), unit=(), nonnegative=(), positive_or_none=(),
                 widths=()) -> None:
    """Range checks by field name: ≥ 1, > 0, in [0, 1], ≥ 0, > 0 or None, all-positive tuples."""
    for name in at_least_one:
        check(getattr(cfg, name) >= 1, name, getattr(cfg, name), "≥ 1")
    for name in positive:
        check(getattr(cfg, name) > 0, name, getattr(cfg, name), "> 0")
    for name in unit:
        check(0.0 <= getattr(cfg, name) <= 1.0, name, getattr(cfg, name), "in [0, 1]")
    for name in nonnegative:
        check(getattr(cfg, name) >= 0, name, getattr(cfg, name), "≥ 0")
    for name in positive_or_none:
        v = getattr(cfg, name)
        check(v is None or v > 0, name, v, "> 0 or null")
    for name in widths:
        v = getattr(cfg, name)
        check(len(v) >= 1 and all(h >= 1 for h in v), name, v, "a non-empty list of positive widths")


def preset_path(name: str) -> Path:
    """Path of a bundled preset by env id (``"CartPole-v1"``) or an explicit file path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        return p
    return PRESET_DIR / f"{name}.yaml"


def load_preset(path, algo: str | None = None) -> dict:
    """Read a YAML preset. A preset is either flat ``{field: value}`` or keyed by algorithm
    (``ppo: {...}, a2c: {...}``); with ``algo`` given, that section is returned."""
    import yaml

    path = preset_path(str(path))
    if not path.is_file():
        raise MissingFileError(f"preset {path} not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InputError(f"preset {path} must be a mapping of hyperparameters")
    if algo is not None and algo in data and isinstance(data[algo], dict):
        return dict(data[algo])
    if algo is not None and any(isinstance(v, dict) for v in data.values()):
        raise InputError(f"preset {path} has no section for {algo!r} (sections: {', '.join(data)})")
    return data


VECTORIZATIONS = ("sync", "async", "fast")


@dataclasses.dataclass
class AgentOptions:
    """Fields every algorithm's config inherits (one level): how the env is vectorized, SB3
    VecNormalize-style normalization (``policylab.deep.normalize``), and network options.
    Defaults reproduce the behaviour of checkpoints written before these fields existed."""

    n_timesteps: int | None = None         # default total env steps of learn() (rl-zoo's n_timesteps)
    vectorization: str = "sync"            # sync: SyncVectorEnv | async: AsyncVectorEnv (subprocesses) | fast: compiled env
    normalize_obs: bool = False            # observations ↦ clip((o − μ)/√(σ² + ε), ±clip_obs), running μ, σ²
    normalize_reward: bool = False         # rewards ↦ clip(r/√(Var[G] + ε), ±clip_reward), G the discounted return
    clip_obs: float = 10.0                 # bound of normalized observations (SB3: 10)
    clip_reward: float = 10.0              # bound of scaled rewards (SB3: 10)
    ortho_init: bool = True                # orthogonal init (gains √2 hidden, 0.01 policy, 1 value); False: torch default
    shared_trunk: bool = False             # actor and critic heads on one MLP body (PPO/A2C; torch backend)

    def validate_options(self) -> None:
        check(self.vectorization in VECTORIZATIONS, "vectorization", self.vectorization,
              " | ".join(VECTORIZATIONS))
        check_fields(self, positive=("clip_obs", "clip_reward"), positive_or_none=("n_timesteps",))
