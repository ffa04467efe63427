"""Checkpointing a vector env: its numbers, small numeric arrays and numpy Generator states, found in
the attributes of the vector env, its wrappers and its sub-envs, as JSON (``env_state``), and their
restoration in place (``set_env_state``), so a resumed run steps the env exactly as before.
A MuJoCo env's physics (``MjData``: qpos, qvel, act, warm start, controls, …) is saved with
``mujoco.mj_getState(..., mjSTATE_INTEGRATION)``, the state MuJoCo documents as enough to continue
the simulation exactly. Sub-envs in subprocesses (``AsyncVectorEnv``) are not reachable: a resumed
async run restarts them from ``reset(seed)``.
"""

from __future__ import annotations

import numpy as np

from policylab.errors import CheckpointError

__all__ = ["env_state", "set_env_state"]


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
    out = []
    for obj in _env_objects(venv):
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
        out.append(d)
    return out


def set_env_state(venv, state: list[dict]) -> None:
    """Restore :func:`env_state` in place (Generators keep their identity)."""
    objs = _env_objects(venv)
    if [type(o).__name__ for o in objs] != [d["__class__"] for d in state]:
        raise CheckpointError("saved env state does not match this env's wrapper structure")
    for obj, d in zip(objs, state):
        for k, v in d.items():
            if k == "__class__":
                continue
            if "mujoco" in v:
                _set_mujoco_state(obj, v["mujoco"])
            elif "rng" in v:
                getattr(obj, k).bit_generator.state = v["rng"]
            elif "array" in v:
                setattr(obj, k, np.array(v["array"], dtype=np.dtype(v["dtype"])).reshape(v["shape"]))
            else:
                setattr(obj, k, getattr(np, v["np"])(v["scalar"]) if v["np"] else v["scalar"])
