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

from policylab.deep.config import AgentOptions, make_config
from policylab.deep.distributions import head_for
from policylab.deep.networks import PolicyValueNet
from policylab.deep.normalize import Normalizer
from policylab.deep.storage import RolloutStorage
from policylab.errors import InputError
from policylab.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

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

    Training envs must autoreset in Gymnasium's SAME_STEP mode (the final observation of an
    episode is in ``info["final_obs"]``, masked by ``info["_final_obs"]``); ids and single envs
    are wrapped in ``SyncVectorEnv(..., autoreset_mode=SAME_STEP)``, or with ``vectorization``
    ``"async"`` in ``AsyncVectorEnv`` (one subprocess per copy: for envs whose step costs more than
    the pipe), or ``"fast"``: policylab's compiled env for the id (``envs.FAST_VECTOR_ENVS``).
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
        try:
            spec = gym.spec(env)
        except gym.error.Error as exc:
            raise InputError(f"unknown env id {env!r}: {exc}") from None
        _check_env_dependencies(env, spec)
        if vectorization == "fast" and not for_eval:
            from policylab.deep.envs import FAST_VECTOR_ENVS, make_fast_vector_env

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
        return AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
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


def set_env_state(venv, state: list[dict]) -> None:
    """Restore :func:`env_state` in place (Generators keep their identity)."""
    objs = _env_objects(venv)
    if [type(o).__name__ for o in objs] != [d["__class__"] for d in state]:
        raise CheckpointError("saved env state does not match this env's wrapper structure")
    for obj, d in zip(objs, state):
        for k, v in d.items():
            if k == "__class__":
                continue
            if "rng" in v:
                getattr(obj, k).bit_generator.state = v["rng"]
            elif "array" in v:
                setattr(obj, k, np.array(v["array"], dtype=np.dtype(v["dtype"])).reshape(v["shape"]))
            else:
                setattr(obj, k, getattr(np, v["np"])(v["scalar"]) if v["np"] else v["scalar"])


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
    supports_shared_trunk: bool = False  # one optimizer over all parameters (shared_trunk allowed)
    legacy_config: ClassVar[dict] = {}  # config values for checkpoints written before a field existed

    def __init__(self, env, seed: int = 0, *, config=None, **hyperparameters):
        self.config = make_config(self.config_class, config, **hyperparameters)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise InputError(f"seed must be an int, got {seed!r}")
        self.seed = int(seed)
        single_threaded_math()
        c = self.config if isinstance(self.config, AgentOptions) else AgentOptions()  # plug-in configs: defaults
        if c.shared_trunk and not self.supports_shared_trunk:
            raise InputError(f"shared_trunk=True: {type(self).__name__} steps actor and critic with separate "
                             "optimizers, so they cannot share a trunk (PPO and A2C can)")
        n_envs = getattr(self.config, "n_envs", 1)
        self.env = make_vec_env(env, n_envs, vectorization=c.vectorization)
        self.env_id = env_id_of(env)
        # evaluation builds a fresh env: from the id, or (for a ready vector env) from its spec id
        self._eval_source = env if isinstance(env, gym_env_type()) else self.env_id
        self.n_envs = self.env.num_envs
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        if c.normalize_obs and type(obs_space).__name__ != "Box":
            raise InputError(f"normalize_obs=True needs a Box observation space; "
                             f"{self.env_id or 'this env'} has {obs_space}")
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
                                  log_std_init=getattr(self.config, "log_std_init", 0.0),
                                  ortho_init=c.ortho_init, shared_trunk=c.shared_trunk)
        # SB3 VecNormalize semantics, one instance for every algorithm and vectorization; γ of the
        # algorithm for the discounted return whose std scales rewards (as rl-zoo sets it)
        self.normalizer = None
        if c.normalize_obs or c.normalize_reward:
            self.normalizer = Normalizer(self.obs_dim, self.n_envs, getattr(self.config, "gamma", 0.99),
                                         normalize_obs=c.normalize_obs, normalize_reward=c.normalize_reward,
                                         clip_obs=c.clip_obs, clip_reward=c.clip_reward)
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
        self.eval_callback = None   # the EvalCallback of the last learn(eval_every=...)
        self.setup()

    # -- hooks for algorithms ------------------------------------------------------------
    def setup(self) -> None:
        """Build optimizers (``self.optimizers[name] = ...``) and buffers."""

    def _train_iteration(self, total_steps: int) -> dict:
        """Collect experience, update, advance ``self.num_steps``; return metrics to log."""
        raise NotImplementedError

    # -- learn loop ------------------------------------------------------------------------
    def learn(self, total_steps: int | None = None, progress_bar: bool = False, log_dir=None,
              tensorboard: bool = True, checkpoint_dir=None, checkpoint_every: int = 0, callback=None,
              eval_every: int = 0, eval_episodes: int = 10, stop_at_return: float | None = None):
        """Train until ``self.num_steps >= total_steps`` (env steps over all envs, counted since
        the agent was created — a loaded checkpoint continues towards the same target, and the
        learning-rate/clip schedules run over ``total_steps``; default: the config's
        ``n_timesteps``). ``log_dir`` → CSV (+TensorBoard); ``checkpoint_dir`` → a checkpoint
        every ``checkpoint_every`` iterations and at the end; ``callback(agent, metrics)`` after
        each iteration (before logging, so it may add metrics), returning False stops.
        ``eval_every`` > 0: a deterministic ``evaluate(eval_episodes)`` every that many env steps,
        logged as ``eval/mean_return``/``eval/std_return``; the best agent is saved to
        ``checkpoint_dir/best``; training stops at the first evaluation with mean ≥
        ``stop_at_return`` (``policylab.deep.callbacks.EvalCallback``). Returns self."""
        from tqdm.auto import tqdm

        if total_steps is None:
            total_steps = getattr(self.config, "n_timesteps", None)
            if total_steps is None:
                raise InputError("total_steps is required (the config has no n_timesteps)")
        if not isinstance(total_steps, (int, float, np.integer)) or not np.isfinite(total_steps) or total_steps < 1:
            raise InputError(f"total_steps must be a positive number, got {total_steps!r}")
        total_steps = int(total_steps)
        evaluator = None
        if eval_every or stop_at_return is not None:
            from policylab.deep.callbacks import EvalCallback

            evaluator = EvalCallback(eval_every, eval_episodes, stop_at_return, start_step=self.num_steps,
                                     best_dir=None if checkpoint_dir is None else Path(checkpoint_dir) / "best")
        self.eval_callback = evaluator
        single_threaded_math()
        logger = None
        if log_dir is not None:
            from policylab.io.logger import RunLogger

            logger = RunLogger(log_dir, tensorboard=tensorboard)
        if self._obs is None:
            self._obs = self._reset_env()
        bar = tqdm(total=total_steps, initial=min(self.num_steps, total_steps), disable=not progress_bar,
                   unit="step", dynamic_ncols=True)
        t0, s0 = time.perf_counter(), self.num_steps
        try:
            while self.num_steps < total_steps:
                before = self.num_steps
                metrics = self._train_iteration(total_steps)
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
                go_on = evaluator is None or evaluator(self, metrics) is not False
                go_on = (callback is None or callback(self, metrics) is not False) and go_on
                if logger is not None:
                    logger.log(self.num_steps, metrics)
                if checkpoint_dir is not None and checkpoint_every and self.iteration % checkpoint_every == 0:
                    self.save(checkpoint_dir)
                if not go_on:
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
        return np.asarray(obs if self.normalizer is None else self.normalizer.reset(obs), dtype=np.float32)

    def step_env(self, actions: np.ndarray):
        """Step every env with sampled actions (clipped to the Box) and count finished episodes
        (with the env's own rewards). Returns next obs (N, obs_dim) float32, rewards (N,),
        terminated (N,), truncated (N,) and the true next states s_{t+1} (N, obs_dim): the final
        observation where an episode ended. Observations and rewards are normalized when the
        config asks for it (``self.normalizer``; statistics updated here, and only here)."""
        next_obs, reward, term, trunc, info = self.env.step(self._env_actions(actions))
        term, trunc = np.asarray(term, dtype=bool), np.asarray(trunc, dtype=bool)
        done = term | trunc
        self._track_episodes(reward, done)
        s_next = np.asarray(next_obs, dtype=np.float32)  # (N, obs_dim)
        if done.any():
            s_next = s_next.copy()
            for i in np.flatnonzero(done):
                s_next[i] = info["final_obs"][i]
        if self.normalizer is not None:
            next_obs, reward = self.normalizer.step(next_obs, reward, done)
            s_next = self.normalizer.obs(s_next) if done.any() else next_obs
        return np.asarray(next_obs, dtype=np.float32), reward, term, trunc, s_next

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
        obs = self._obs
        trunc_values = np.zeros_like(buf.values)
        for t in range(buf.rewards.shape[0]):
            a, buf.logp[t], buf.values[t] = self._sample_step(obs)  # (N,) or (N, d); (N,); (N,)
            next_obs, reward, term, trunc, s_next = self.step_env(a)
            buf.obs[t] = obs
            buf.actions[t] = a
            buf.rewards[t] = reward
            buf.terminated[t] = term
            buf.truncated[t] = trunc
            if trunc.any():  # bootstrap from the true last state of a time-limited episode
                idx = np.flatnonzero(trunc)
                trunc_values[t, idx] = self._value(s_next[idx])
            obs = next_obs
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
        if self.normalizer is not None:  # the training statistics, never updated here
            x = self.normalizer.obs(x)
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
        if self.normalizer is not None:
            tensors.update({f"normalize/{k}": torch.from_numpy(np.atleast_1d(v))
                            for k, v in self.normalizer.state_dict().items()})
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
        algo = meta.get("algo")
        target = algorithm_class(algo) if cls is Agent else cls
        if algo != target.algo:
            raise CheckpointError(f"{path} holds a {algo!r} checkpoint, not {cls.algo!r}")
        source = env if env is not None else meta.get("env_id")
        if source is None:
            raise InputError(f"{path} was trained on an unregistered env: pass env= to load it")
        # fields added to a config after a checkpoint was written keep the behaviour it was trained with
        agent = target(source, seed=meta["seed"], config={**target.legacy_config, **meta["config"]})
        if str(agent.env.single_action_space) != meta["action_space"] or agent.obs_dim != meta["obs_dim"]:
            raise CheckpointError(f"env spaces do not match checkpoint {path}")
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
        agent.np_rng.bit_generator.state = meta["np_rng"]
        agent.num_steps, agent.iteration = int(meta["num_steps"]), int(meta["iteration"])
        agent.recent_returns.extend(meta.get("recent_returns", []))
        if agent.normalizer is not None:
            norm = {k[10:]: v.numpy() for k, v in tensors.items() if k.startswith("normalize/")}
            agent.normalizer.load_state_dict(norm)
        if "state/obs" in tensors:
            agent._obs = tensors["state/obs"].numpy().copy()
            agent._ep_return = tensors["state/ep_return"].numpy().copy()
            agent._ep_length = tensors["state/ep_length"].numpy().copy()
            agent.env.reset(seed=agent.seed)  # create sub-env state, then overwrite it
            set_env_state(agent.env, meta["env_state"])
        return agent


def algorithm_class(name: str) -> type:
    """The Agent subclass registered under ``name`` in ALGORITHMS (imported lazily)."""
    if name not in ALGORITHMS:
        raise InputError(f"unknown algorithm {name!r}; choose from {', '.join(ALGORITHMS)}")
    module, cls = ALGORITHMS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_agent(path, env=None) -> Agent:
    """Load any policylab.deep checkpoint, dispatching on the algorithm recorded in it."""
    return Agent.load(path, env=env)
