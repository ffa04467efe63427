"""Sampling experience: the behaviour policy's action, and the two Python samplers of
transitions (a TabularMDP drawn with the shared SplitMix64 stream exactly like the compiled
kernels, or a Gymnasium env)."""

from __future__ import annotations

import math

import numba
import numpy as np

from policylab.errors import DivergenceError, InputError
from policylab.tabular.inputs import Problem, mdp_arrays
from policylab.tabular.rng import (
    epsilon_greedy_action,
    fill_uniforms,
    make_rng_state,
    sample_cdf,
    sample_transition,
)

__all__ = ["GymSampler", "MDPSampler", "Uniforms", "policy_cdf", "select_action"]


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


@numba.njit(cache=True, inline="always")
def select_action(prediction, q, pi_cdf, eps, s, u_explore, u_pick):
    """Behaviour policy at state s: a ∼ π(·|s) (prediction) or ε-greedy(Q(s,·)) with the
    given ε. Consumes exactly two uniforms (drawn by the caller)."""
    if prediction:
        return sample_cdf(pi_cdf[s], u_pick)
    return epsilon_greedy_action(q[s], eps, u_explore, u_pick)


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
    """reset()/step(a) on a Gymnasium env with Discrete spaces; seeds the env once. Every
    reward is checked as it arrives: a NaN/inf reward stops the run (DivergenceError naming
    the step) before it reaches the table."""

    def __init__(self, problem: Problem, seed: int, max_episode_steps: int | None):
        env = problem.env
        if max_episode_steps is not None:
            from gymnasium.wrappers import TimeLimit

            env = TimeLimit(env, max_episode_steps=max_episode_steps)
        self.env, self.seed = env, seed
        self.o0, self.a0 = problem.obs_start, problem.act_start
        self.t = 0  # env steps taken so far = the learner's step index t

    def reset(self) -> int:
        obs, _ = self.env.reset(seed=self.seed)
        self.seed = None  # seed only the first episode; later resets continue the env's stream
        return int(obs) - self.o0

    def step(self, s: int, a: int):
        obs, r, terminated, truncated, _ = self.env.step(a + self.a0)
        r = float(r)
        if not math.isfinite(r):
            raise DivergenceError(f"step {self.t}: the env returned reward {r} (state {s}, "
                                  f"action {a}); rewards must be finite, stopped before the update")
        self.t += 1
        # a time limit hit on entering a terminal state is a termination (no bootstrap)
        return int(obs) - self.o0, r, bool(terminated), bool(truncated) and not terminated


def make_sampler(problem: Problem, uniforms: Uniforms, seed: int, max_episode_steps):
    """MDPSampler for a TabularMDP, GymSampler for an env."""
    if problem.mdp is not None:
        return MDPSampler(problem.mdp, uniforms, max_episode_steps)
    return GymSampler(problem, seed, max_episode_steps)
