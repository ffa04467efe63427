"""Shared plumbing for the tabular learners: input checks, the result object, the trace
layout, and the two ways of sampling experience in Python (a Gymnasium env, or a
TabularMDP sampled with the shared SplitMix64 stream exactly like the compiled kernels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from policylab.errors import InputError
from policylab.tabular.rng import fill_uniforms, make_rng_state, sample_cdf, sample_transition

__all__ = ["TRACE_DTYPE", "TabularResult"]

#: One row per update. ``q_before``/``q_after`` hold V(s) for the prediction methods;
#: ``target`` is y_t (the return G_t for Monte Carlo); ``a_next`` is SARSA's a', else −1.
TRACE_DTYPE = np.dtype([
    ("t", np.int64), ("episode", np.int64), ("s", np.int64), ("a", np.int64),
    ("r", np.float64), ("s_next", np.int64), ("a_next", np.int64),
    ("terminated", np.bool_), ("truncated", np.bool_),
    ("alpha", np.float64), ("target", np.float64), ("td_error", np.float64),
    ("q_before", np.float64), ("q_after", np.float64),
])
TRACE_INT_FIELDS = ("t", "episode", "s", "a", "s_next", "flags", "a_next")  # (n, 7) int64
TRACE_FLOAT_FIELDS = ("r", "alpha", "target", "td_error", "q_before", "q_after")  # (n, 6) float64


@dataclass
class TabularResult:
    """What a tabular learner returns.

    Q: (S, A) action values (control), else None.  V: (S,) state values (max_a Q for control).
    policy: (S,) greedy actions argmax_a Q (control), else None.
    episode_returns / episode_lengths: (E,) undiscounted return and length of every episode
        that ended (terminated or truncated) during the run.
    visits: (S, A) N(s, a), how often each action was taken in each state.  trace: (steps,) structured array of TRACE_DTYPE when asked, else None.
    """

    algorithm: str
    V: np.ndarray
    Q: np.ndarray | None
    policy: np.ndarray | None
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    visits: np.ndarray
    steps: int
    backend: str
    config: dict = field(default_factory=dict)
    trace: np.ndarray | None = None

    def __repr__(self) -> str:
        table = "Q" + str(self.Q.shape) if self.Q is not None else "V" + str(self.V.shape)
        return (f"TabularResult({self.algorithm}, {table}, steps={self.steps}, "
                f"episodes={len(self.episode_returns)}, backend={self.backend!r}, "
                f"trace={'yes' if self.trace is not None else 'no'})")


def plain_config(value):
    """A JSON-friendly config value: Schedules as their repr, arrays as a shape note."""
    if isinstance(value, np.ndarray):
        return f"array{value.shape}"
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    return repr(value)


def assemble_trace(ints: list[np.ndarray], floats: list[np.ndarray]) -> np.ndarray:
    """Join kernel trace chunks ((n, 7) int64 and (n, 6) float64) into one TRACE_DTYPE array."""
    ti = np.concatenate(ints) if ints else np.zeros((0, 7), np.int64)
    tf = np.concatenate(floats) if floats else np.zeros((0, 6), np.float64)
    out = np.empty(len(ti), dtype=TRACE_DTYPE)
    for k, name in enumerate(TRACE_INT_FIELDS):
        if name == "flags":
            out["terminated"] = (ti[:, k] & 1).astype(bool)
            out["truncated"] = (ti[:, k] & 2).astype(bool)
        else:
            out[name] = ti[:, k]
    for k, name in enumerate(TRACE_FLOAT_FIELDS):
        out[name] = tf[:, k]
    return out


# ---------------------------------------------------------------------------- input checks
# Bad arguments raise ValueError (also for wrong types): the CLI maps ValueError to exit code 2.
def check_positive_int(value, name: str) -> int:
    """``value`` as an int ≥ 1 (floats like 1e6 accepted when integral); error names ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    if not np.isfinite(value) or value != int(value) or value <= 0:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_gamma(gamma, default: float | None) -> float:
    if gamma is None:
        if default is None:
            raise InputError("gamma is required when learning from a gymnasium env "
                             "(a TabularMDP supplies its own mdp.gamma)")
        return float(default)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(gamma) <= 1.0:
        raise InputError(f"gamma must be in [0, 1], got {gamma!r}")
    return float(gamma)


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
        check_positive_int(max_episode_steps, "max_episode_steps")
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


def run_in_chunks(run_chunk, total: int, chunk: int, progress: bool, desc: str, unit: str) -> list:
    """Call ``run_chunk(n)`` until ``total`` units are done, ``chunk`` at a time when showing a
    tqdm bar (else in one call); the learners carry their state across calls, so the numbers
    do not depend on the chunking. Returns the list of chunk outputs."""
    if not progress:
        return [run_chunk(total)]
    from tqdm import tqdm

    outputs, done = [], 0
    with tqdm(total=total, desc=desc, unit=unit, unit_scale=True) as bar:
        while done < total:
            n = min(chunk, total - done)
            outputs.append(run_chunk(n))
            done += n
            bar.update(n)
    return outputs


def policy_cdf(policy, n_states: int, n_actions: int) -> np.ndarray:
    """(S, A) cumulative action distribution of a policy given as (S,) ints or (S, A) probs."""
    if policy is None:
        raise InputError("policy is required: (S,) action indices or (S, A) probabilities")
    pi = np.asarray(policy)
    if pi.shape == (n_states,) and np.issubdtype(pi.dtype, np.integer):
        if ((pi < 0) | (pi >= n_actions)).any():
            s = int(np.flatnonzero((pi < 0) | (pi >= n_actions))[0])
            raise InputError(f"policy[{s}] = {pi[s]} is not an action in [0, {n_actions})")
        probs = np.eye(n_actions)[pi]
    elif pi.shape == (n_states, n_actions):
        probs = pi.astype(np.float64)
        bad = ~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1) \
            | (np.abs(probs.sum(axis=1) - 1.0) > 1e-8)
        if bad.any():
            s = int(np.flatnonzero(bad)[0])
            raise InputError(f"policy[{s}] = {probs[s].tolist()} is not a probability distribution")
    else:
        raise InputError(f"policy must have shape ({n_states},) of int actions or "
                         f"({n_states}, {n_actions}) of probabilities, got {pi.shape} {pi.dtype}")
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = np.maximum(cdf[:, -1], 1.0)  # never fall off the end through rounding
    return cdf


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


def mdp_arrays(mdp):
    """(indptr, next_state, prob, reward, initial_cdf, terminal) as the kernels want them."""
    indptr, nxt, prob, rew = mdp.transitions()
    init_cdf = np.cumsum(mdp.initial)
    init_cdf[-1] = max(init_cdf[-1], 1.0)
    return indptr, nxt, prob, rew, init_cdf, np.ascontiguousarray(mdp.terminal, dtype=np.bool_)


# ---------------------------------------------------------------------------- Python samplers
class Uniforms:
    """The shared SplitMix64 stream, drawn in blocks for the Python path."""

    def __init__(self, seed: int, block: int = 4096):
        self.state = make_rng_state(seed)
        self.buf = np.empty(block)
        self.i = block

    def __call__(self) -> float:
        if self.i == len(self.buf):
            fill_uniforms(self.state, self.buf)
            self.i = 0
        u = self.buf[self.i]
        self.i += 1
        return float(u)


class MDPSampler:
    """reset()/step(a) on a TabularMDP using the shared stream: same draws as the kernels."""

    def __init__(self, mdp, uniforms: Uniforms, max_episode_steps: int | None):
        (self.indptr, self.next_state, self.prob, self.reward, self.init_cdf,
         self.terminal) = mdp_arrays(mdp)
        self.A = mdp.n_actions
        self.u = uniforms
        self.max_steps = max_episode_steps or 0
        self.ep_len = 0

    def reset(self) -> int:
        self.ep_len = 0
        return int(sample_cdf(self.init_cdf, self.u()))

    def step(self, s: int, a: int):
        j = sample_transition(self.indptr, self.prob, s * self.A + a, self.u())
        s2 = int(self.next_state[j])
        self.ep_len += 1
        terminated = bool(self.terminal[s2])
        truncated = not terminated and 0 < self.max_steps <= self.ep_len
        return s2, float(self.reward[j]), terminated, truncated


class GymSampler:
    """reset()/step(a) on a Gymnasium env with Discrete spaces; seeds the env once."""

    def __init__(self, problem: Problem, seed: int, max_episode_steps: int | None):
        env = problem.env
        if max_episode_steps is not None:
            from gymnasium.wrappers import TimeLimit

            env = TimeLimit(env, max_episode_steps=max_episode_steps)
        self.env, self.seed = env, seed
        self.o0, self.a0 = problem.obs_start, problem.act_start

    def reset(self) -> int:
        obs, _ = self.env.reset(seed=self.seed)
        self.seed = None  # seed only the first episode; later resets continue the env's stream
        return int(obs) - self.o0

    def step(self, s: int, a: int):
        obs, r, terminated, truncated, _ = self.env.step(a + self.a0)
        # a time limit hit on entering a terminal state is a termination (no bootstrap)
        return int(obs) - self.o0, float(r), bool(terminated), bool(truncated) and not terminated


def make_sampler(problem: Problem, uniforms: Uniforms, seed: int, max_episode_steps):
    if problem.mdp is not None:
        return MDPSampler(problem.mdp, uniforms, max_episode_steps)
    return GymSampler(problem, seed, max_episode_steps)
