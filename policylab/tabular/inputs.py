"""Checks of a tabular learner's arguments, all before any work, and the learner's view of
its problem: a TabularMDP (flattened to the kernels' CSR arrays) or a Gymnasium env."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policylab.errors import DivergenceError, InputError

__all__ = ["MAX_STEPS"]

#: Largest step (or episode) count a learner accepts: 10¹² steps is ~11 hours of the
#: compiled kernel at 25M updates/s; anything larger is a typo (1e19 overflows int64).
MAX_STEPS = 10**12


def check_count(value, name: str, maximum: int = MAX_STEPS) -> int:
    """``value`` as an int in [1, maximum] (floats like 1e6 accepted when integral); the
    InputError names ``name`` and, when too large, MAX_STEPS."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    if value != int(value) or value <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    if int(value) > maximum:
        raise InputError(f"{name} = {value!r} is more than MAX_STEPS = {maximum:.0e} "
                         "(policylab.tabular.MAX_STEPS)")
    return int(value)


def check_gamma(gamma, default: float | None) -> float:
    """γ ∈ [0, 1], or the MDP's own ``default`` when None (an env has none: then required)."""
    if gamma is None:
        if default is None:
            raise InputError("gamma is required when learning from a gymnasium env "
                             "(a TabularMDP supplies its own mdp.gamma)")
        return float(default)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(gamma) <= 1.0:
        raise InputError(f"gamma must be in [0, 1], got {gamma!r}")
    return float(gamma)


def check_seeds(seed, seeds) -> list[int]:
    """The run's seeds: ``[seed]``, or the list ``seeds`` (non-empty, each an int ≥ 0)."""
    from policylab.tabular.rng import make_rng_state

    if seeds is None:
        make_rng_state(seed)
        return [seed]
    if seed != 0:
        raise InputError("pass seed or seeds, not both")
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__") or len(seeds) == 0:
        raise InputError(f"seeds must be a non-empty list of ints >= 0, got {seeds!r}")
    for s in seeds:
        make_rng_state(s)
    return [int(s) for s in seeds]


def initial_table(value, shape: tuple[int, ...], name: str = "initial_value") -> np.ndarray:
    """A fresh float64 table of ``shape`` filled from a scalar or an array of that shape."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(shape, float(arr))
    elif arr.shape != shape:
        raise InputError(f"{name} must be a number or have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} must be finite")
    return arr.copy()


def check_finite_table(table: np.ndarray, name: str, steps_done: int) -> None:
    """DivergenceError when a learned table holds NaN/inf (rewards too large to sum)."""
    if not np.isfinite(table).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(table))[0])
        raise DivergenceError(f"{name}{list(idx)} = {table[idx]} after step {steps_done}: the "
                              "values overflowed (rewards too large for float64)")


@dataclass
class Problem:
    """The learner's view of its input: sizes, and either an MDP or a Gymnasium env."""

    n_states: int
    n_actions: int
    mdp: object | None = None
    env: object | None = None
    obs_start: int = 0
    act_start: int = 0


def resolve_problem(env_or_mdp, max_episode_steps) -> Problem:
    """Check the env/MDP argument (Discrete spaces only) before any work."""
    from policylab.mdp import TabularMDP

    if max_episode_steps is not None:
        check_count(max_episode_steps, "max_episode_steps")
    if isinstance(env_or_mdp, TabularMDP):
        return Problem(env_or_mdp.n_states, env_or_mdp.n_actions, mdp=env_or_mdp)
    import gymnasium as gym

    if not isinstance(env_or_mdp, gym.Env):
        raise InputError(f"env_or_mdp must be a TabularMDP or a gymnasium.Env, got "
                         f"{type(env_or_mdp).__name__}")
    for which in ("observation_space", "action_space"):
        space = getattr(env_or_mdp, which)
        if not isinstance(space, gym.spaces.Discrete):
            raise InputError(f"env_or_mdp.{which} must be gymnasium.spaces.Discrete for tabular "
                             f"learning, got {space}")
    obs, act = env_or_mdp.observation_space, env_or_mdp.action_space
    return Problem(int(obs.n), int(act.n), env=env_or_mdp, obs_start=int(obs.start),
                   act_start=int(act.start))


def resolve_backend(backend: str, problem: Problem) -> str:
    """"auto" → "compiled" for a TabularMDP, "python" for a gymnasium env; checks the choice."""
    if backend not in ("auto", "compiled", "python"):
        raise InputError(f"backend must be 'auto', 'compiled' or 'python', got {backend!r}")
    if backend == "auto":
        return "compiled" if problem.mdp is not None else "python"
    if backend == "compiled" and problem.mdp is None:
        raise InputError("backend='compiled' needs a TabularMDP; a gymnasium env runs in Python")
    return backend


def mdp_arrays(mdp):
    """(indptr, next_state, prob, reward, initial_cdf, terminal) as the kernels want them."""
    indptr, nxt, prob, rew = mdp.transitions()
    init_cdf = np.cumsum(mdp.initial)
    init_cdf[-1] = max(init_cdf[-1], 1.0)
    return indptr, nxt, prob, rew, init_cdf, np.ascontiguousarray(mdp.terminal, dtype=np.bool_)
