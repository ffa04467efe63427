"""Vector-env construction for training and evaluation: an env id, a ``gymnasium.Env`` or a ready
``VectorEnv`` → a Gymnasium vector env that autoresets in SAME_STEP mode (so truncation bootstraps).
"""

from __future__ import annotations

from policylab.errors import InputError

__all__ = ["env_id_of", "gym_env_type", "make_vec_env"]


def _same_step(venv) -> bool:
    mode = getattr(venv, "metadata", {}).get("autoreset_mode")
    return str(getattr(mode, "value", mode)) == "SameStep"


def _check_env_dependencies(env_id: str, spec) -> None:
    """MuJoCo envs are registered by Gymnasium but need the ``mujoco`` package: say which extra."""
    if "mujoco" in str(spec.entry_point):
        try:
            import mujoco  # noqa: F401
        except ImportError:
            raise InputError(f"env {env_id!r} needs MuJoCo: pip install \"policylab[mujoco]\" "
                             "(the mujoco extra, = gymnasium[mujoco])") from None


def make_vec_env(env, n_envs: int = 1, *, for_eval: bool = False, vectorization: str = "sync"):
    """Env id, ``gymnasium.Env`` or ready ``gymnasium.vector.VectorEnv`` → vector env.

    An id may be Gymnasium's ``"module:id"``: the module (which registers the env) is imported first.
    Training envs must autoreset in Gymnasium's SAME_STEP mode (the final observation of an
    episode is in ``info["final_obs"]``, masked by ``info["_final_obs"]``); ids and single envs
    are wrapped in ``SyncVectorEnv(..., autoreset_mode=SAME_STEP)``, or with ``vectorization``
    ``"async"`` in ``AsyncVectorEnv`` (one subprocess per copy: for envs whose step costs more than
    the pipe), or ``"fast"``: policylab's compiled env for the id (``FAST_VECTOR_ENVS``).
    Evaluation envs (``for_eval=True``) may use any mode: only each sub-env's first episode
    counts, so an id uses its fast ``vector_entry_point`` when Gymnasium has one.
    """
    import gymnasium as gym
    from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

    if isinstance(env, VectorEnv):
        if not for_eval and not _same_step(env):
            raise InputError(f"vector env {type(env).__name__} must autoreset in SAME_STEP mode "
                             "(gymnasium.vector.AutoresetMode.SAME_STEP) so truncation can bootstrap")
        return env
    if isinstance(env, str):
        spec_id = env
        if ":" in env:   # Gymnasium's "module:id": import the module that registers the env (gym.make does too)
            import importlib

            module, _, spec_id = env.partition(":")
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise InputError(f"env {env!r}: cannot import module {module!r} ({exc})") from None
        try:
            spec = gym.spec(spec_id)
        except gym.error.Error as exc:
            raise InputError(f"unknown env id {env!r}: {exc}") from None
        _check_env_dependencies(env, spec)
        if vectorization == "fast" and not for_eval:
            from policylab.deep.vector_cartpole import FAST_VECTOR_ENVS, make_fast_vector_env

            if env not in FAST_VECTOR_ENVS:
                raise InputError(f"vectorization='fast': policylab has no compiled env for {env!r} "
                                 f"(only {', '.join(sorted(FAST_VECTOR_ENVS))}); use 'sync' or 'async'")
            return make_fast_vector_env(env, n_envs)
        if for_eval and spec.vector_entry_point is not None:
            return gym.make_vec(env, num_envs=n_envs, vectorization_mode="vector_entry_point")
        fns = [lambda: gym.make(env, disable_env_checker=True)] * n_envs
    elif isinstance(env, gym.Env):
        if n_envs > 1 and env.spec is None:
            raise InputError("a gymnasium.Env without a spec can only be used with n_envs=1; "
                             "pass an env id or a vector env instead")
        fns = [lambda: env] + [lambda: gym.make(env.spec, disable_env_checker=True)] * (n_envs - 1)
    else:
        raise InputError(
            f"env must be an env id, a gymnasium.Env or a VectorEnv, got {type(env).__name__}")
    if vectorization == "async" and not for_eval and isinstance(env, str):
        # checkpoints reach the sub-envs through StateAccess (env_state.py)
        from policylab.deep.env_state import StateAccess

        return AsyncVectorEnv([lambda: StateAccess(gym.make(env, disable_env_checker=True))] * n_envs,
                              autoreset_mode=AutoresetMode.SAME_STEP)
    if vectorization != "sync" and not for_eval:
        raise InputError(f"vectorization={vectorization!r} needs an env id, got a {type(env).__name__}")
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


def gym_env_type():
    import gymnasium as gym

    return gym.Env


def env_id_of(env) -> str | None:
    if isinstance(env, str):
        return env
    spec = getattr(env, "spec", None)
    return getattr(spec, "id", None)
