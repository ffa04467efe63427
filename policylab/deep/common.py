"""Shared agent plumbing: env creation, seeding, the learn loop, rollout collection, act,
evaluate, save/load. Algorithms subclass :class:`Agent` once (one level) and write only their
``_train_iteration`` (see ``policylab/deep/__init__.py`` for the plug-in recipe).
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from policylab.deep.config import make_config
from policylab.deep.distributions import head_for
from policylab.deep.guards import check_finite, deferred_interrupt, run_locks
from policylab.deep.networks import PolicyValueNet
from policylab.deep.storage import RolloutStorage
from policylab.errors import InputError
from policylab.io.checkpoint import CheckpointError, check_meta, load_checkpoint, save_checkpoint

__all__ = [
    "ALGORITHMS",
    "Agent",
    "EvalStats",
    "env_state",
    "explained_variance",
    "load_agent",
    "make_vec_env",
    "set_env_state",
]

MAX_STEPS = 10**12  # largest total_steps accepted by learn (int64-safe)

# CLI / checkpoint name → "module:Class" (imported lazily).
ALGORITHMS = {
    "ppo": "policylab.deep.ppo:PPO",
    "a2c": "policylab.deep.a2c:A2C",
    "reinforce": "policylab.deep.reinforce:REINFORCE",
    "actor-critic": "policylab.deep.actor_critic:ActorCritic",
}


def explained_variance(v_pred: np.ndarray, target: np.ndarray) -> float:
    """EV = 1 − Var[R − V] / Var[R]: 1 is a perfect critic, 0 no better than a constant (NaN if Var[R] = 0)."""
    var = float(np.var(target))
    return float("nan") if var == 0.0 else 1.0 - float(np.var(target - v_pred)) / var


def single_threaded_math() -> None:
    """One thread for torch and for every loaded BLAS (numpy's and scipy's OpenBLAS, which the
    numba kernels of PPO's numpy backend call). Small networks run fastest this way, and float32
    sums do not depend on the thread count, so a seed gives the same numbers on any machine."""
    import scipy.linalg.cython_blas  # noqa: F401 (load the BLAS numba calls, so it is limited too)
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")


# ---------------------------------------------------------------- environments

def _same_step(venv) -> bool:
    mode = getattr(venv, "metadata", {}).get("autoreset_mode")
    return str(getattr(mode, "value", mode)) == "SameStep"


def make_vec_env(env, n_envs: int = 1, *, for_eval: bool = False):
    """Env id, ``gymnasium.Env`` or ready ``gymnasium.vector.VectorEnv`` → vector env.

    Training envs must autoreset in Gymnasium's SAME_STEP mode (the final observation of an
    episode is in ``info["final_obs"]``, masked by ``info["_final_obs"]``); ids and single envs
    are wrapped in ``SyncVectorEnv(..., autoreset_mode=SAME_STEP)``. Evaluation envs
    (``for_eval=True``) may use any mode: only each sub-env's first episode counts, so an id
    uses its fast ``vector_entry_point`` when Gymnasium has one.
    """
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv

    if isinstance(env, VectorEnv):
        if not for_eval and not _same_step(env):
            raise InputError(f"vector env {type(env).__name__} must autoreset in SAME_STEP mode "
                             "(gymnasium.vector.AutoresetMode.SAME_STEP) so truncation can bootstrap")
        return env
    if isinstance(env, str):
        try:
            spec = gym.spec(env)
        except gym.error.Error as exc:
            raise InputError(f"unknown env id {env!r}: {exc}") from None
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
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


def gym_env_type():
    import gymnasium as gym

    return gym.Env


def env_id_of(env) -> str | None:
    if isinstance(env, str):
        return env
    spec = getattr(env, "spec", None)
    return getattr(spec, "id", None)


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
        out.append(d)
    return out


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
    if not isinstance(state, list) or not all(isinstance(d, dict) for d in state) or (
            [type(o).__name__ for o in objs] != [d.get("__class__") for d in state]):
        raise CheckpointError(f"{where}: saved env state does not match this env's wrapper structure")
    for obj, d in zip(objs, state):
        current = vars(obj)
        for k, v in d.items():
            if k == "__class__":
                continue
            if k not in current:
                raise CheckpointError(f"{where}: env_state names {type(obj).__name__}.{k!s:.40}, "
                                      "which this env does not have")
            try:
                value = _decode_env_value(v, current[k])
            except (TypeError, ValueError, KeyError, OverflowError) as exc:
                raise CheckpointError(f"{where}: env_state {type(obj).__name__}.{k}: {exc}") from None
            if not (isinstance(v, dict) and "rng" in v):
                setattr(obj, k, value)


# ---------------------------------------------------------------- agent base

@dataclass
class EvalStats:
    mean: float          # mean episodic return
    std: float           # its standard deviation over episodes
    returns: list        # per-episode returns
    lengths: list        # per-episode lengths


class Agent:
    """Base of every policylab.deep algorithm (see the package docstring for the recipe)."""

    algo: str = ""                 # key in ALGORITHMS
    config_class: type = None      # the algorithm's config dataclass
    discrete_only: bool = False    # reject Box action spaces
    uses_critic: bool = True       # build V_w(s)
    legacy_config: ClassVar[dict] = {}  # config values for checkpoints written before a field existed

    def __init__(self, env, seed: int = 0, *, config=None, **hyperparameters):
        self.config = make_config(self.config_class, config, **hyperparameters)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise InputError(f"seed must be an int ≥ 0, got {seed!r}")
        self.seed = int(seed)
        single_threaded_math()
        n_envs = getattr(self.config, "n_envs", 1)
        self.env = make_vec_env(env, n_envs)
        self.env_id = env_id_of(env)
        # evaluation builds a fresh env: from the id, or (for a ready vector env) from its spec id
        self._eval_source = env if isinstance(env, gym_env_type()) else self.env_id
        self.n_envs = self.env.num_envs
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        if len(getattr(obs_space, "shape", ()) or ()) != 1:
            raise InputError(f"observation space {obs_space} must be a 1-d Box")
        self.head = head_for(act_space)
        if self.discrete_only and not self.head.discrete:
            raise InputError(f"{type(self).__name__} supports discrete actions only; "
                             f"{self.env_id or 'this env'} has action space {act_space}")
        self.obs_dim = int(obs_space.shape[0])
        self._low = self._high = None
        if not self.head.discrete and np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high)):
            self._low, self._high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
        torch.manual_seed(self.seed)
        self.net = PolicyValueNet(self.obs_dim, self.head, getattr(self.config, "hidden_sizes", (64, 64)),
                                  getattr(self.config, "activation", "tanh"), critic=self.uses_critic,
                                  log_std_init=getattr(self.config, "log_std_init", 0.0))
        self.torch_rng = torch.Generator().manual_seed(self.seed)   # action sampling (torch nets)
        self.np_rng = np.random.default_rng(self.seed)              # minibatches; actions (numpy mirror)
        self.num_steps = 0          # env steps so far (all envs)
        self.iteration = 0          # train iterations so far
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.np_net = None          # numpy mirror of self.net (PPO backend="numpy"), set in setup
        self._obs: np.ndarray | None = None                         # (N, obs_dim) current obs
        self._ep_return = np.zeros(self.n_envs)
        self._ep_length = np.zeros(self.n_envs, dtype=np.int64)
        self._finished: list[tuple[float, int]] = []                # episodes since last log
        self.recent_returns: deque = deque(maxlen=100)
        self.setup()

    # -- hooks for algorithms ------------------------------------------------------------
    def setup(self) -> None:
        """Build optimizers (``self.optimizers[name] = ...``) and buffers."""

    def _train_iteration(self, total_steps: int) -> dict:
        """Collect experience, update, advance ``self.num_steps``; return metrics to log."""
        raise NotImplementedError

    # -- learn loop ------------------------------------------------------------------------
    def learn(self, total_steps: int, progress_bar: bool = False, log_dir=None, tensorboard: bool = True,
              checkpoint_dir=None, checkpoint_every: int = 0, callback=None):
        """Train until ``self.num_steps >= total_steps`` (env steps over all envs, counted since
        the agent was created — a loaded checkpoint continues towards the same target, and the
        learning-rate/clip schedules run over ``total_steps``). ``log_dir`` → CSV (+TensorBoard);
        ``checkpoint_dir`` → a checkpoint every ``checkpoint_every`` iterations and at the end;
        ``callback(agent, metrics)`` after each iteration, returning False stops. Returns self.

        Guards (``policylab.deep.guards``): ``log_dir`` and ``checkpoint_dir`` are locked for the
        call (RunLockedError if another process writes them); a NaN/inf reward, loss, gradient or
        parameter raises DivergenceError before that iteration is logged or saved; Ctrl-C ends the
        current iteration, saves a checkpoint (if ``checkpoint_dir``) and raises KeyboardInterrupt;
        a log continued at ``num_steps > 0`` drops rows after ``num_steps`` (from a killed run)."""
        with run_locks(log_dir, checkpoint_dir), deferred_interrupt() as interrupted:
            return self._learn(total_steps, progress_bar, log_dir, tensorboard, checkpoint_dir, checkpoint_every,
                               callback, interrupted)

    def _learn(self, total_steps, progress_bar, log_dir, tensorboard, checkpoint_dir, checkpoint_every, callback,
               interrupted):
        from tqdm.auto import tqdm

        if (not isinstance(total_steps, (int, float, np.integer)) or isinstance(total_steps, bool)
                or not 1 <= total_steps <= MAX_STEPS):
            raise InputError(f"total_steps must be a number in [1, 1e12], got {total_steps!r}")
        total_steps = int(total_steps)
        single_threaded_math()
        logger = None
        if log_dir is not None:
            from policylab.io.logger import RunLogger

            logger = RunLogger(log_dir, tensorboard=tensorboard, resume_step=self.num_steps or None)
        if self._obs is None:
            self._obs = self._reset_env()
        bar = tqdm(total=total_steps, initial=min(self.num_steps, total_steps), disable=not progress_bar,
                   unit="step", dynamic_ncols=True)
        t0, s0 = time.perf_counter(), self.num_steps
        try:
            while self.num_steps < total_steps:
                before = self.num_steps
                try:
                    metrics = self._train_iteration(total_steps)
                except Exception:
                    check_finite(self, {})  # a NaN/inf made the iteration fail: report the divergence
                    raise
                self.iteration += 1
                bar.update(min(self.num_steps, total_steps) - min(before, total_steps))
                if self._finished:
                    rets, lens = zip(*self._finished)
                    metrics["charts/episodic_return"] = float(np.mean(rets))
                    metrics["charts/episodic_length"] = float(np.mean(lens))
                    self._finished.clear()
                    if progress_bar:
                        bar.set_postfix(ret=f"{np.mean(self.recent_returns):.1f}", refresh=False)
                metrics["charts/SPS"] = (self.num_steps - s0) / max(time.perf_counter() - t0, 1e-9)
                check_finite(self, metrics)
                if logger is not None:
                    logger.log(self.num_steps, metrics)
                if checkpoint_dir is not None and checkpoint_every and self.iteration % checkpoint_every == 0:
                    self.save(checkpoint_dir)
                if interrupted[0]:  # Ctrl-C: checkpoint this consistent state, then stop
                    if checkpoint_dir is not None:
                        self.save(checkpoint_dir)
                    raise KeyboardInterrupt
                if callback is not None and callback(self, metrics) is False:
                    break
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        if checkpoint_dir is not None:
            self.save(checkpoint_dir)
        return self

    def _reset_env(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.seed)
        return np.asarray(obs, dtype=np.float32)

    def _track_episodes(self, rewards: np.ndarray, dones: np.ndarray) -> None:
        self._ep_return += rewards
        self._ep_length += 1
        if dones.any():
            for i in np.flatnonzero(dones):
                self._finished.append((float(self._ep_return[i]), int(self._ep_length[i])))
                self.recent_returns.append(float(self._ep_return[i]))
            self._ep_return[dones] = 0.0
            self._ep_length[dones] = 0

    def _env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Sampled actions → what the env accepts (Gaussian samples clipped to the Box)."""
        return actions if self._low is None else np.clip(actions, self._low, self._high)

    # -- rollout (shared by A2C, PPO, and any n-step method) -----------------------------------
    def allocate_rollout(self, n_steps: int) -> RolloutStorage:
        """Storage for ``n_steps`` steps of every env, shaped for this env's spaces."""
        return RolloutStorage.allocate(n_steps, self.n_envs, self.obs_dim, self.head.action_shape,
                                       self.head.discrete)

    def _sample_step(self, obs: np.ndarray):
        """a ~ π(·|s), log π(a|s) and V(s) for observations (N, obs_dim), all numpy: with the numpy
        mirror and ``self.np_rng`` when there is one (cheaper per call on small nets), else with
        the torch net and ``self.torch_rng``."""
        if self.np_net is None:
            obs_t = torch.from_numpy(obs)
            params = self.net.policy_params(obs_t)
            action = self.head.sample(params, self.torch_rng)  # (N,) or (N, d)
            return action.numpy(), self.head.log_prob(params, action).numpy(), self.net.value(obs_t).numpy()
        params, _ = self.np_net.policy_params(obs)
        action = self.head.np_sample(params, self.np_rng)
        return action, self.head.np_log_prob_entropy(params, action)[0], self.np_net.value(obs)[0]

    def _value(self, obs: np.ndarray) -> np.ndarray:
        """V(s) (B,) for observations (B, obs_dim)."""
        if self.np_net is None:
            return self.net.value(torch.from_numpy(obs)).numpy()
        return self.np_net.value(obs)[0]

    @torch.inference_mode()
    def collect_rollout(self, buf: RolloutStorage) -> None:
        """Fill ``buf`` with T steps of every env under the current policy, from ``self._obs``."""
        env = self.env
        obs = self._obs
        trunc_values = np.zeros_like(buf.values)
        for t in range(buf.rewards.shape[0]):
            a, buf.logp[t], buf.values[t] = self._sample_step(obs)  # (N,) or (N, d); (N,); (N,)
            next_obs, reward, term, trunc, info = env.step(self._env_actions(a))
            buf.obs[t] = obs
            buf.actions[t] = a
            buf.rewards[t] = reward
            buf.terminated[t] = term
            buf.truncated[t] = trunc
            if trunc.any():  # bootstrap from the true last state of a time-limited episode
                idx = np.flatnonzero(trunc)
                final = np.stack([info["final_obs"][i] for i in idx]).astype(np.float32)
                trunc_values[t, idx] = self._value(final)
            self._track_episodes(reward, term | trunc)
            obs = np.asarray(next_obs, dtype=np.float32)
        buf.next_values[:-1] = buf.values[1:]
        buf.next_values[-1] = self._value(obs)  # V(s_T) (N,)
        np.copyto(buf.next_values, trunc_values, where=buf.truncated)
        self._obs = obs
        self.num_steps += buf.rewards.size

    # -- acting and evaluation -------------------------------------------------------------------
    @torch.inference_mode()
    def act(self, obs, deterministic: bool = True, generator: torch.Generator | None = None):
        """Action(s) for one observation (obs_dim,) or a batch (B, obs_dim), as the env takes them."""
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        if x.shape[-1] != self.obs_dim or x.ndim not in (1, 2):
            raise InputError(f"obs must have shape ({self.obs_dim},) or (B, {self.obs_dim}), got {x.shape}")
        x = x.reshape(-1, self.obs_dim)
        if self.np_net is None:
            params = self.net.policy_params(torch.from_numpy(x))
        else:  # the numpy mirror's forward: same weights, ~5× cheaper per call on small nets
            out = torch.from_numpy(self.np_net.actor.forward(x)[0])
            params = out if self.head.discrete else (out, self.net.log_std)
        a = self.head.mode(params) if deterministic else self.head.sample(params, generator or self.torch_rng)
        a = self._env_actions(a.numpy())
        return a[0] if single else a

    def evaluate(self, episodes: int = 10, deterministic: bool = True, seed: int | None = None,
                 env=None) -> EvalStats:
        """Run ``episodes`` episodes in parallel (one per sub-env) and return their returns.
        ``env`` defaults to the training env's id; ``seed`` defaults to ``self.seed + 10_000``."""
        if not isinstance(episodes, (int, np.integer)) or episodes < 1:
            raise InputError(f"episodes must be a positive int, got {episodes!r}")
        source = env if env is not None else self._eval_source
        if not isinstance(source, str) and not hasattr(source, "num_envs"):
            source = env_id_of(source)  # a single gymnasium.Env: copies made from its spec
        if source is None or source is self.env:
            raise InputError("cannot build an evaluation env from the training env: pass env= "
                             "(an env id or a separate vector env)")
        venv = make_vec_env(source, episodes, for_eval=True)
        n = venv.num_envs
        seed = self.seed + 10_000 if seed is None else int(seed)
        gen = torch.Generator().manual_seed(seed)
        obs, _ = venv.reset(seed=seed)
        returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
        running = np.ones(n, dtype=bool)
        while running.any():
            obs, r, term, trunc, _ = venv.step(self.act(obs, deterministic, gen))
            returns += np.where(running, r, 0.0)
            lengths += running
            running &= ~(np.asarray(term) | np.asarray(trunc))
        if venv is not source:
            venv.close()
        returns, lengths = returns[:episodes], lengths[:episodes]
        return EvalStats(float(returns.mean()), float(returns.std()), returns.tolist(), lengths.tolist())

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write a checkpoint directory: safetensors (weights, optimizer moments, torch RNG,
        current observations) + JSON (config, counters, numpy and env RNG/state). Atomic."""
        tensors = {f"net/{k}": v for k, v in self.net.state_dict().items()}
        tensors["rng/torch"] = self.torch_rng.get_state()
        groups = {}
        for name, opt in self.optimizers.items():
            sd = opt.state_dict()
            groups[name] = sd["param_groups"]
            for idx, st in sd["state"].items():
                for key, val in st.items():
                    tensors[f"optim/{name}/{idx}/{key}"] = torch.as_tensor(val)
        if self._obs is not None:
            tensors["state/obs"] = torch.from_numpy(self._obs)
            tensors["state/ep_return"] = torch.from_numpy(self._ep_return)
            tensors["state/ep_length"] = torch.from_numpy(self._ep_length)
        meta = {
            "algo": self.algo, "env_id": self.env_id, "seed": self.seed,
            "config": dataclasses.asdict(self.config),
            "num_steps": self.num_steps, "iteration": self.iteration,
            "obs_dim": self.obs_dim, "action_space": str(self.env.single_action_space),
            "optimizer_param_groups": groups, "np_rng": self.np_rng.bit_generator.state,
            "recent_returns": list(self.recent_returns),
            "env_state": env_state(self.env) if self._obs is not None else None,
        }
        return save_checkpoint(path, tensors, meta)

    @classmethod
    def load(cls, path, env=None):
        """Rebuild an agent from ``save(path)``: same config, weights, optimizer, RNG and env
        state, so ``learn`` continues exactly as an uninterrupted run would. ``env`` is needed
        only when the agent was trained on an env without a registered id."""
        tensors, meta = load_checkpoint(path)
        where = Path(path) / "checkpoint.json" if Path(path).is_dir() else Path(path)
        check_meta(meta, CHECKPOINT_FIELDS, where)
        algo = meta["algo"]
        if algo not in ALGORITHMS:
            raise CheckpointError(f"{where}: unknown algorithm {algo!r:.40}")
        target = algorithm_class(algo) if cls is Agent else cls
        if algo != target.algo:
            raise CheckpointError(f"{path} holds a {algo!r} checkpoint, not {cls.algo!r}")
        source = env if env is not None else meta.get("env_id")
        if source is None:
            raise InputError(f"{path} was trained on an unregistered env: pass env= to load it")
        if not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in meta.get("recent_returns", [])):
            raise CheckpointError(f"{where}: field 'recent_returns' must hold numbers")
        # fields added to a config after a checkpoint was written keep the behaviour it was trained with
        try:
            config = make_config(target.config_class, {**target.legacy_config, **meta["config"]})
        except InputError as exc:
            raise CheckpointError(f"{where}: saved config: {exc}") from None
        agent = target(source, seed=meta["seed"], config=config)
        if str(agent.env.single_action_space) != meta["action_space"] or agent.obs_dim != meta["obs_dim"]:
            raise CheckpointError(f"env spaces do not match checkpoint {path}")
        try:
            agent.np_rng.bit_generator.state = meta["np_rng"]
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{where}: field 'np_rng' is not a numpy Generator state ({exc})") from None
        for name, opt in agent.optimizers.items():
            _check_param_groups(meta["optimizer_param_groups"].get(name), opt.state_dict()["param_groups"],
                                f"{where}: optimizer_param_groups.{name}")
        try:
            agent.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net/")})
            agent.torch_rng.set_state(tensors["rng/torch"])
            for name, opt in agent.optimizers.items():
                state: dict = {}
                for k, v in tensors.items():
                    if k.startswith(f"optim/{name}/"):
                        _, _, idx, key = k.split("/", 3)
                        state.setdefault(int(idx), {})[key] = v
                opt.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"][name]})
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit {target.__name__}: {exc}") from None
        agent.num_steps, agent.iteration = meta["num_steps"], meta["iteration"]
        agent.recent_returns.extend(meta.get("recent_returns", []))
        if "state/obs" in tensors:
            state = {k: tensors.get(f"state/{k}") for k in ("obs", "ep_return", "ep_length")}
            shapes = {"obs": ((agent.n_envs, agent.obs_dim), torch.float32), "ep_return": ((agent.n_envs,), torch.float64),
                      "ep_length": ((agent.n_envs,), torch.int64)}
            for k, t in state.items():
                if t is None or (tuple(t.shape), t.dtype) != shapes[k]:
                    raise CheckpointError(f"checkpoint {path}: tensor state/{k} is missing or has the wrong shape/dtype")
            agent._obs, agent._ep_return, agent._ep_length = (state[k].numpy().copy() for k in shapes)
            agent.env.reset(seed=agent.seed)  # create sub-env state, then overwrite it
            set_env_state(agent.env, meta["env_state"], where)
        return agent


# checkpoint.json of an agent: field → type (int fields ≥ 0; "?" = optional); nothing else is accepted
CHECKPOINT_FIELDS = {
    "algo": str, "env_id": (str, type(None)), "seed": int, "config": dict, "num_steps": int, "iteration": int,
    "obs_dim": int, "action_space": str, "optimizer_param_groups": dict, "np_rng": dict,
    "recent_returns?": list, "env_state": (list, type(None)),
}


def _check_param_groups(saved, fresh: list, where: str) -> None:
    """Saved optimizer param groups must have the fresh optimizer's layout: same groups, known keys,
    each value of the same kind (finite number, bool, None, list of numbers) and the same params."""
    def same_kind(a, b) -> bool:
        if isinstance(b, bool) or b is None:
            return a is None or isinstance(a, bool)
        if isinstance(b, (int, float)):
            return isinstance(a, (int, float)) and not isinstance(a, bool) and np.isfinite(a)
        if isinstance(b, (list, tuple)):
            return isinstance(a, list) and len(a) == len(b) and all(same_kind(x, y) for x, y in zip(a, b))
        return isinstance(a, type(b))

    if not isinstance(saved, list) or len(saved) != len(fresh):
        raise CheckpointError(f"{where}: expected {len(fresh)} parameter group(s)")
    for g_saved, g_fresh in zip(saved, fresh):
        bad = [k for k in g_saved if k not in g_fresh or not same_kind(g_saved[k], g_fresh[k])] if isinstance(
            g_saved, dict) else ["(not an object)"]
        if bad or g_saved.get("params") != g_fresh["params"]:
            raise CheckpointError(f"{where}: bad entries {bad or ['params']!r:.80}")


def algorithm_class(name: str) -> type:
    """The Agent subclass registered under ``name`` in ALGORITHMS (imported lazily)."""
    if name not in ALGORITHMS:
        raise InputError(f"unknown algorithm {name!r}; choose from {', '.join(ALGORITHMS)}")
    module, cls = ALGORITHMS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_agent(path, env=None) -> Agent:
    """Load any policylab.deep checkpoint, dispatching on the algorithm recorded in it."""
    return Agent.load(path, env=env)
