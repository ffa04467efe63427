"""The one base class of every policylab.deep algorithm: config, env, seeding, the learn loop and
its hooks, experience collection (rollouts and transitions), act, evaluate, save/load.

The learn loop calls ``_train_iteration`` until the step budget is spent; by default that is the
on-policy schedule ``collect()`` then ``update()``. The hooks an algorithm overrides (one level of
inheritance; see the package docstring for both recipes):

    build_net()       the network (default: PolicyValueNet, separate MLP actor and critic)
    setup()           optimizers (``self.optimizers[name]``, saved by name), the backend
    make_storage()    where experience goes: a (T, N) RolloutStorage of ``config.n_steps`` (default)
                      or a ``replay.ReplayBuffer`` (off-policy)
    collect()         the collection step: ``collect_rollout(self.storage)`` (default) or
                      ``collect_transitions(self.storage, train_freq)`` with ``explore(obs)``
    update()          the gradient step(s) on the storage; returns metrics to log
    _train_iteration  the schedule: collect then update (override for anything else)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from policylab.deep.backend import TorchBackend
from policylab.deep.config import AgentOptions, make_config
from policylab.deep.distributions import head_for
from policylab.deep.env_state import env_state, set_env_state
from policylab.deep.guards import check_finite, deferred_interrupt, run_locks
from policylab.deep.networks import PolicyValueNet
from policylab.deep.normalize import Normalizer
from policylab.deep.registry import ALGORITHMS, algorithm_class
from policylab.deep.replay import ReplayBuffer, restore_replay, save_replay
from policylab.deep.storage import RolloutStorage
from policylab.deep.threads import single_threaded_math
from policylab.deep.vec_env import env_id_of, gym_env_type, make_vec_env
from policylab.errors import CheckpointError, InputError
from policylab.io.checkpoint import check_meta, load_checkpoint, save_checkpoint

__all__ = ["Agent", "EvalStats", "load_agent"]

MAX_STEPS = 10**12  # largest total_steps accepted by learn (int64-safe)

log = logging.getLogger("policylab.deep")


@dataclass
class EvalStats:
    mean: float          # mean episodic return
    std: float           # its standard deviation over episodes
    returns: list        # per-episode returns
    lengths: list        # per-episode lengths


class Agent:
    """Base of every policylab.deep algorithm (see the module and package docstrings for the hooks)."""

    algo: str = ""                 # key in registry.ALGORITHMS
    config_class: type = None      # the algorithm's config dataclass
    discrete_only: bool = False    # reject Box action spaces
    uses_critic: bool = True       # build V_w(s)
    supports_shared_trunk: bool = False  # one optimizer over all parameters (shared_trunk allowed)
    legacy_config: ClassVar[dict] = {}  # config values for checkpoints written before a field existed

    def __init__(self, env, seed: int = 0, *, config=None, **hyperparameters):
        self.config = make_config(self.config_class, config, **hyperparameters)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise InputError(f"seed must be an int ≥ 0, got {seed!r}")
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
        self.net = self.build_net()
        # SB3 VecNormalize semantics, one instance for every algorithm and vectorization; γ of the
        # algorithm for the discounted return whose std scales rewards (as rl-zoo sets it)
        self.normalizer = None
        if c.normalize_obs or c.normalize_reward:
            self.normalizer = Normalizer(self.obs_dim, self.n_envs, getattr(self.config, "gamma", 0.99),
                                         normalize_obs=c.normalize_obs, normalize_reward=c.normalize_reward,
                                         clip_obs=c.clip_obs, clip_reward=c.clip_reward)
        self.torch_rng = torch.Generator().manual_seed(self.seed)   # action sampling (torch backend)
        self.np_rng = np.random.default_rng(self.seed)              # minibatches; actions (numpy backend)
        self.num_steps = 0          # env steps so far (all envs)
        self.iteration = 0          # train iterations so far
        self.progress_remaining = 1.0  # 1 − num_steps / total_steps at the start of the iteration (schedules)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        # how the net computes for the rollout and act; algorithms may install a training backend in setup
        self.backend = TorchBackend(self.net, self.head, self.torch_rng)
        self.notes: list[str] = []  # one-line facts about this agent (e.g. the backend chosen), logged by learn
        self._obs: np.ndarray | None = None                         # (N, obs_dim) current obs
        self._ep_return = np.zeros(self.n_envs)
        self._ep_length = np.zeros(self.n_envs, dtype=np.int64)
        self._finished: list[tuple[float, int]] = []                # episodes since last log
        self.recent_returns: deque = deque(maxlen=100)
        self.eval_callback = None   # the EvalCallback of the last learn(eval_every=...)
        self.storage = self.make_storage()
        self.setup()
        for note in self.notes:
            log.info(note)

    # -- hooks for algorithms ------------------------------------------------------------
    def build_net(self) -> torch.nn.Module:
        """The network (saved as ``net/*`` in checkpoints: put every trained module inside it)."""
        c = self.config
        return PolicyValueNet(self.obs_dim, self.head, getattr(c, "hidden_sizes", (64, 64)),
                              getattr(c, "activation", "tanh"), critic=self.uses_critic,
                              log_std_init=getattr(c, "log_std_init", 0.0),
                              ortho_init=getattr(c, "ortho_init", True), shared_trunk=getattr(c, "shared_trunk", False))

    def setup(self) -> None:
        """Build optimizers (``self.optimizers[name] = ...``) and, if it trains through one, the backend."""

    def make_storage(self):
        """Where collected experience goes: a (T, N) rollout of ``config.n_steps`` if the config has
        that field (on-policy), else None. Off-policy methods return a ``replay.ReplayBuffer``."""
        n_steps = getattr(self.config, "n_steps", None)
        return None if n_steps is None else self.allocate_rollout(n_steps)

    def collect(self) -> None:
        """The collection step: one rollout into ``self.storage`` (on-policy). Off-policy methods
        call ``self.collect_transitions(self.storage, train_freq)`` instead."""
        self.collect_rollout(self.storage)

    def update(self) -> dict:
        """Gradient step(s) on ``self.storage``; return metrics to log (``STANDARD_KEYS`` names)."""
        raise NotImplementedError

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """Behaviour actions for ``collect_transitions`` (N,) or (N, d): default a ~ π(·|s)."""
        return self.backend.sample(obs)[0]

    def _train_iteration(self, total_steps: int) -> dict:
        """The update schedule of one iteration: collect, then update. Override for other schedules
        (REINFORCE: whole episodes; ActorCritic: an update after every env step)."""
        self.collect()
        return self.update()

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
        ``stop_at_return`` (``policylab.deep.callbacks.EvalCallback``). Returns self.

        Guards (``policylab.deep.guards``): ``log_dir`` and ``checkpoint_dir`` are locked for the
        call (RunLockedError if another process writes them); a NaN/inf reward, loss, gradient or
        parameter raises DivergenceError before that iteration is logged or saved; Ctrl-C ends the
        current iteration, saves a checkpoint (if ``checkpoint_dir``) and raises KeyboardInterrupt;
        a log continued at ``num_steps > 0`` drops rows after ``num_steps`` (from a killed run)."""
        with run_locks(log_dir, checkpoint_dir), deferred_interrupt() as interrupted:
            return self._learn(total_steps, progress_bar, log_dir, tensorboard, checkpoint_dir, checkpoint_every,
                               callback, eval_every, eval_episodes, stop_at_return, interrupted)

    def _learn(self, total_steps, progress_bar, log_dir, tensorboard, checkpoint_dir, checkpoint_every, callback,
               eval_every, eval_episodes, stop_at_return, interrupted):
        from tqdm.auto import tqdm

        if total_steps is None:
            total_steps = getattr(self.config, "n_timesteps", None)
            if total_steps is None:
                raise InputError("total_steps is required (the config has no n_timesteps)")
        if (not isinstance(total_steps, (int, float, np.integer)) or isinstance(total_steps, bool)
                or not 1 <= total_steps <= MAX_STEPS):
            raise InputError(f"total_steps must be a number in [1, 1e12], got {total_steps!r}")
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

            logger = RunLogger(log_dir, tensorboard=tensorboard, resume_step=self.num_steps or None)
        if self._obs is None:
            self._obs = self._reset_env()
        bar = tqdm(total=total_steps, initial=min(self.num_steps, total_steps), disable=not progress_bar,
                   unit="step", dynamic_ncols=True)
        if progress_bar:
            for note in self.notes:
                bar.write(note)
        t0, s0 = time.perf_counter(), self.num_steps
        try:
            while self.num_steps < total_steps:
                before = self.num_steps
                self.progress_remaining = 1.0 - self.num_steps / total_steps
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
                check_finite(self, metrics, self.__dict__.pop("_finite_sums", None))  # this update's sums, once
                go_on = evaluator is None or evaluator(self, metrics) is not False
                go_on = (callback is None or callback(self, metrics) is not False) and go_on
                if logger is not None:
                    logger.log(self.num_steps, metrics)
                if checkpoint_dir is not None and checkpoint_every and self.iteration % checkpoint_every == 0:
                    self.save(checkpoint_dir)
                if interrupted[0]:  # Ctrl-C: checkpoint this consistent state, then stop
                    if checkpoint_dir is not None:
                        self.save(checkpoint_dir)
                    raise KeyboardInterrupt
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
        # (N, obs_dim); normalized from the env's own dtype (float64 for MuJoCo), as SB3 does
        next_obs = np.asarray(next_obs, dtype=None if self.normalizer else np.float32)
        s_next = next_obs
        if done.any():
            s_next = next_obs.copy()
            for i in np.flatnonzero(done):
                s_next[i] = info["final_obs"][i]
        if self.normalizer is not None:
            next_obs, reward = self.normalizer.step(next_obs, reward, done)  # float32
            s_next = self.normalizer.obs(s_next) if done.any() else next_obs
        return next_obs, reward, term, trunc, s_next

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

    @torch.inference_mode()
    def collect_rollout(self, buf: RolloutStorage) -> None:
        """Fill ``buf`` with T steps of every env under the current policy, from ``self._obs``."""
        backend, obs = self.backend, self._obs
        trunc_values = np.zeros_like(buf.values)
        for t in range(buf.rewards.shape[0]):
            a, buf.logp[t], buf.values[t] = backend.sample(obs)  # (N,) or (N, d); (N,); (N,)
            next_obs, reward, term, trunc, s_next = self.step_env(a)
            buf.obs[t] = obs
            buf.actions[t] = a
            buf.rewards[t] = reward
            buf.terminated[t] = term
            buf.truncated[t] = trunc
            if trunc.any():  # bootstrap from the true last state of a time-limited episode
                idx = np.flatnonzero(trunc)
                trunc_values[t, idx] = backend.value(s_next[idx])
            obs = next_obs
        buf.next_values[:-1] = buf.values[1:]
        buf.next_values[-1] = backend.value(obs)  # V(s_T) (N,)
        np.copyto(buf.next_values, trunc_values, where=buf.truncated)
        self._obs = obs
        self.num_steps += buf.rewards.size

    @torch.inference_mode()
    def collect_transitions(self, buf, n_steps: int) -> None:
        """Step every env ``n_steps`` times with ``explore(obs)`` and add each transition
        (s, a, r, s', terminated, truncated) to ``buf`` (a ``replay.ReplayBuffer``). s' is the true
        next state (the final observation where an episode ended), so a truncated step bootstraps
        from V(s') and only ``terminated`` cuts the target."""
        obs = self._obs
        for _ in range(n_steps):
            a = self.explore(obs)  # (N,) or (N, d)
            next_obs, reward, term, trunc, s_next = self.step_env(a)
            buf.add(obs, a, reward, s_next, term, trunc)
            obs = next_obs
        self._obs = obs
        self.num_steps += n_steps * self.n_envs

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
        params = self.backend.policy_params(x)
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
        if isinstance(self.storage, ReplayBuffer):  # written first, tagged with num_steps (config.save_replay_buffer)
            save_replay(self, path)
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
        fresh = {name: opt.state_dict()["param_groups"] for name, opt in agent.optimizers.items()}
        for name, groups in fresh.items():
            _flatten_saved_optimizer(tensors, meta, name, groups, where)
        _check_tensor_keys(tensors, agent, where.parent / str(meta.get("weights")))
        for name, groups in fresh.items():
            _check_param_groups(meta["optimizer_param_groups"].get(name), groups, f"{where}: optimizer_param_groups.{name}")
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
        if agent.normalizer is not None:
            agent.normalizer.load_state_dict({k[10:]: v.numpy() for k, v in tensors.items()
                                              if k.startswith("normalize/")})
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
        if isinstance(agent.storage, ReplayBuffer):
            restore_replay(agent, path)
        return agent


# checkpoint.json of an agent: field → type (int fields ≥ 0; "?" = optional); nothing else is accepted
CHECKPOINT_FIELDS = {
    "algo": str, "env_id": (str, type(None)), "seed": int, "config": dict, "num_steps": int, "iteration": int,
    "obs_dim": int, "action_space": str, "optimizer_param_groups": dict, "np_rng": dict,
    "recent_returns?": list, "env_state": (list, type(None)),
}


def _flatten_saved_optimizer(tensors: dict, meta: dict, name: str, fresh: list, where) -> None:
    """A checkpoint written before an optimizer moved to one flat parameter buffer (see
    ``networks.flatten_parameters``: DQN and SAC) holds one state per tensor: concatenate them in
    parameter order — the buffer's layout — so the run resumes with the same moments, and the same
    numbers as the code that wrote it (test)."""
    saved = meta["optimizer_param_groups"].get(name)
    if not (isinstance(saved, list) and len(saved) == 1 and isinstance(saved[0], dict) and len(fresh) == 1
            and fresh[0]["params"] == [0] and isinstance(saved[0].get("params"), list) and len(saved[0]["params"]) > 1):
        return
    ids = saved[0]["params"]
    states = [{k.rsplit("/", 1)[1]: tensors.pop(k) for k in [k for k in tensors if k.startswith(f"optim/{name}/{i}/")]}
              for i in ids]
    if not all(st.keys() == states[0].keys() for st in states):
        raise CheckpointError(f"{where}: optimizer {name!r} holds different state keys per parameter")
    for key in states[0]:  # none before the first step
        parts = [st[key] for st in states]
        flat = parts[0] if key == "step" else torch.cat([t.reshape(-1) for t in parts])
        tensors[f"optim/{name}/0/{key}"] = flat
    saved[0] = {**saved[0], "params": [0]}  # its foreach/fused flags kept: the same Adam kernel, the same numbers


def _check_tensor_keys(tensors: dict, agent: Agent, weights: Path) -> None:
    """The weights file must hold exactly this agent's network tensors, and optimizer state only
    for its optimizers' parameters, shaped like them: else a CheckpointError naming the file and
    the first missing, unexpected or misshapen key (another network layout or an older policylab;
    per-tensor optimizer state of a network that is now one flat buffer was concatenated before)."""
    net = {f"net/{k}": v.shape for k, v in agent.net.state_dict().items()}
    params = {name: [p for g in opt.param_groups for p in g["params"]] for name, opt in agent.optimizers.items()}
    missing, unexpected, shapes = [f"missing key {k!r}" for k in net if k not in tensors], [], []
    for k in sorted(tensors):
        kind, _, rest = k.partition("/")
        name, _, idx = rest.partition("/")
        idx = idx.split("/")[0]
        if kind == "net" and k not in net or kind == "optim" and (
                name not in params or not idx.isdigit() or int(idx) >= len(params[name])):
            unexpected.append(f"unexpected key {k!r}")
        elif kind in ("net", "optim") and tensors[k].ndim > 0:
            want = net[k] if kind == "net" else params[name][int(idx)].shape
            if tensors[k].shape != want:
                shapes.append(f"key {k!r} has shape {tuple(tensors[k].shape)}, it needs {tuple(want)}")
    problems = missing + unexpected + shapes
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointError(f"{weights} does not fit this {type(agent).__name__}: {problems[0]}{more} — "
                              "saved with another network layout or an older policylab version")


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


def load_agent(path, env=None) -> Agent:
    """Load any policylab.deep checkpoint, dispatching on the algorithm recorded in it."""
    return Agent.load(path, env=env)
