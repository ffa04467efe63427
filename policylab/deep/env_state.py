"""Checkpointing a vector env: its numbers, small numeric arrays and numpy Generator states, found in
the attributes of the vector env, its wrappers and its sub-envs, as JSON (``env_state``), and their
restoration in place (``set_env_state``), so a resumed run steps the env exactly as before. The JSON
is data with a fixed schema: restoring only sets attributes the env already has, each with a value
of the same kind; no name in it is ever looked up as code (a crafted file raises CheckpointError).
A MuJoCo env's physics (``MjData``: qpos, qvel, act, warm start, controls, …) is saved with
``mujoco.mj_getState(..., mjSTATE_INTEGRATION)``, the state MuJoCo documents as enough to continue
the simulation exactly. Sub-envs in subprocesses (``AsyncVectorEnv``) are reached through the
:class:`StateAccess` wrapper ``make_vec_env`` puts around each of them: its ``policylab_env_state``
attribute is read with ``get_attr`` and restored with ``set_attr`` (one value per sub-env), so an
async run resumes exactly like a sync one.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from policylab.errors import CheckpointError

__all__ = ["StateAccess", "env_state", "set_env_state"]

ASYNC_SUBENVS = "AsyncSubEnvs"  # the entry holding the sub-env states of an AsyncVectorEnv


def _is_async(venv) -> bool:
    return type(venv).__name__ == "AsyncVectorEnv"


class StateAccess(gym.Wrapper):
    """Outermost wrapper of a sub-env in a subprocess: ``policylab_env_state`` reads and restores the
    env state of this sub-env's wrapper chain (the same JSON as for a sync sub-env)."""

    @property
    def policylab_env_state(self) -> list[dict]:
        return [_object_state(o) for o in _chain(self.env)]

    @policylab_env_state.setter
    def policylab_env_state(self, state: list[dict]) -> None:
        _restore(_chain(self.env), state, "checkpoint (async sub-env)")


def _chain(env) -> list:
    out = []
    while env is not None:
        out.append(env)
        env = getattr(env, "env", None)
    return out


def _env_objects(venv) -> list:
    """Every object whose attributes make up the env state: vector env + wrappers + sub-envs."""
    objs, e = [], venv
    while e is not None and e not in objs:
        objs.append(e)
        e = getattr(e, "env", None) if not hasattr(e, "envs") else None
    for sub in getattr(objs[-1], "envs", []) or []:
        while sub is not None:
            objs.append(sub)
            sub = getattr(sub, "env", None)
    return objs


def _mujoco_state(obj) -> list | None:
    """The full integration state of a MuJoCo env object (one with ``model``/``data``), else None."""
    data, model = getattr(obj, "data", None), getattr(obj, "model", None)
    if type(data).__name__ != "MjData" or type(model).__name__ != "MjModel":
        return None
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, state, spec)
    return state.tolist()


def _set_mujoco_state(obj, state: list) -> None:
    import mujoco

    mujoco.mj_setState(obj.model, obj.data, np.asarray(state, dtype=np.float64),
                       mujoco.mjtState.mjSTATE_INTEGRATION)


def env_state(venv) -> list[dict]:
    """JSON-able snapshot of a vector env: numbers, small numeric arrays and numpy Generator
    states found in the attributes of the vector env, its wrappers and its sub-envs."""
    objs = _env_objects(venv)
    out = [_object_state(obj) for obj in objs]
    if objs and _is_async(objs[-1]):  # sub-envs in subprocesses: through StateAccess (make_vec_env)
        out.append({"__class__": ASYNC_SUBENVS, "envs": list(objs[-1].get_attr("policylab_env_state"))})
    return out


def _object_state(obj) -> dict:
    """The saved attributes of one object of the env (vector env, wrapper or sub-env)."""
    d: dict = {"__class__": type(obj).__name__}
    for k, v in vars(obj).items():
        if isinstance(v, np.random.Generator):
            d[k] = {"rng": v.bit_generator.state}
        elif isinstance(v, np.ndarray) and v.dtype.kind in "biuf" and v.size <= 100_000:
            d[k] = {"array": v.tolist(), "dtype": v.dtype.str, "shape": list(v.shape)}
        elif isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)) or v is None:
            d[k] = {"scalar": v.item() if isinstance(v, np.generic) else v,
                    "np": type(v).__name__ if isinstance(v, np.generic) else None}
    mj = _mujoco_state(obj)
    if mj is not None:
        d["__mujoco__"] = {"mujoco": mj}
    return d


_NP_SCALARS = {t.__name__: t for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                        np.uint32, np.uint64, np.float16, np.float32, np.float64)}
_NUMBER = (bool, int, float, np.bool_, np.integer, np.floating)


def _decode_env_value(v, current):
    """One saved attribute → its value (or None after restoring a Generator in place). The JSON is
    data with a fixed schema: each kind must replace an attribute of the same kind (or None)."""
    if not isinstance(v, dict):
        raise TypeError(f"expected an object, got {type(v).__name__}")
    if set(v) == {"rng"}:
        if not isinstance(current, np.random.Generator) or not isinstance(v["rng"], dict):
            raise ValueError("not a numpy Generator")
        current.bit_generator.state = v["rng"]
        return None
    if set(v) == {"array", "dtype", "shape"}:
        dtype, shape = np.dtype(str(v["dtype"])), v["shape"]
        if current is not None and not isinstance(current, np.ndarray):
            raise ValueError(f"is a {type(current).__name__}, not an array")
        if dtype.kind not in "biuf" or not isinstance(shape, list) or len(shape) > 8 or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise ValueError(f"bad dtype {v['dtype']!r} or shape {shape!r}")
        values = np.asarray(v["array"])
        if values.dtype.kind not in "biuf" or values.size != int(np.prod(shape)) or values.size > 100_000:
            raise ValueError(f"array values do not fit shape {shape} (numbers only, ≤ 100000)")
        return values.astype(dtype).reshape(shape)
    if set(v) == {"scalar", "np"}:
        scalar, name = v["scalar"], v["np"]
        if current is not None and not isinstance(current, _NUMBER):
            raise ValueError(f"is a {type(current).__name__}, not a number")
        if scalar is not None and not isinstance(scalar, (bool, int, float)):
            raise ValueError(f"{scalar!r:.40} is not a number")
        if name is None:
            return scalar
        if name not in _NP_SCALARS or scalar is None:
            raise ValueError(f"numpy type {name!r:.40} is not one of {', '.join(_NP_SCALARS)}")
        return _NP_SCALARS[name](scalar)
    raise ValueError(f"unknown entry with keys {sorted(v)!r:.80}")


def set_env_state(venv, state: list[dict], where="checkpoint") -> None:
    """Restore :func:`env_state` in place (Generators keep their identity). Only attributes that
    the env already has are set, each with a value of its kind (Generator state, numeric array,
    number); no name in the JSON is ever looked up as code. CheckpointError naming ``where``."""
    objs = _env_objects(venv)
    if not isinstance(state, list) or not all(isinstance(d, dict) for d in state):
        raise CheckpointError(f"{where}: saved env state is not a list of objects")
    if objs and _is_async(objs[-1]):
        subs = state[-1] if state and state[-1].get("__class__") == ASYNC_SUBENVS else None
        if subs is None or not isinstance(subs.get("envs"), list) or len(subs["envs"]) != objs[-1].num_envs:
            raise CheckpointError(f"{where}: saved env state has no state for the {objs[-1].num_envs} "
                                  "sub-envs of this AsyncVectorEnv (saved from a sync run?)")
        _restore(objs, state[:-1], where)
        objs[-1].set_attr("policylab_env_state", subs["envs"])  # one value per sub-env, in its process
        return
    _restore(objs, state, where)


def _restore(objs: list, state: list, where: str) -> None:
    if not isinstance(state, list) or not all(isinstance(d, dict) for d in state) or (
            [type(o).__name__ for o in objs] != [d.get("__class__") for d in state]):
        raise CheckpointError(f"{where}: saved env state does not match this env's wrapper structure")
    for obj, d in zip(objs, state):
        current = vars(obj)
        for k, v in d.items():
            if k == "__class__":
                continue
            if k == "__mujoco__":  # the physics of a MuJoCo env: a list of numbers, size checked by MuJoCo
                try:
                    if _mujoco_state(obj) is None or set(v) != {"mujoco"} or not all(
                            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v["mujoco"]):
                        raise ValueError("not the integration state of this MuJoCo env")
                    _set_mujoco_state(obj, v["mujoco"])
                except (TypeError, ValueError, AttributeError) as exc:
                    raise CheckpointError(f"{where}: env_state {type(obj).__name__} physics: {exc}") from None
                continue
            if k not in current:
                raise CheckpointError(f"{where}: env_state names {type(obj).__name__}.{k!s:.40}, "
                                      "which this env does not have")
            try:
                value = _decode_env_value(v, current[k])
            except (TypeError, ValueError, KeyError, OverflowError) as exc:
                raise CheckpointError(f"{where}: env_state {type(obj).__name__}.{k}: {exc}") from None
            old = current[k]
            if isinstance(value, np.ndarray) and isinstance(old, np.ndarray) and old.shape == value.shape \
                    and old.dtype == value.dtype and old.flags.writeable:
                np.copyto(old, value)  # in place: the array may be a view (AsyncVectorEnv's shared memory)
            elif not (isinstance(v, dict) and "rng" in v):
                setattr(obj, k, value)
