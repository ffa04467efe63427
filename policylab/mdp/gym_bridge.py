"""Bridges between TabularMDP and Gymnasium: sample an MDP as an env, read an env's model."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

from policylab.errors import InputError, InvalidMDPError
from policylab.mdp.model import TabularMDP


class MDPEnv(gym.Env):
    """A gymnasium.Env sampling a TabularMDP.

    reset() draws s_0 ~ initial; step(a) draws s' ~ P(·|s, a) and returns r = R(s, a, s').
    ``terminated`` is True on entering a terminal state; ``truncated`` at max_episode_steps.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, mdp: TabularMDP, seed: int | None = None, max_episode_steps: int | None = None):
        if max_episode_steps is not None and int(max_episode_steps) <= 0:
            raise InputError(f"max_episode_steps must be positive, got {max_episode_steps}")
        self.mdp = mdp
        self.observation_space = gym.spaces.Discrete(mdp.n_states)
        self.action_space = gym.spaces.Discrete(mdp.n_actions)
        self.max_episode_steps = max_episode_steps
        self._indptr, self._next, self._prob, self._reward = mdp.transitions()
        self._state = 0
        self._t = 0
        if seed is not None:
            self.reset(seed=seed)

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        self._state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.initial))
        self._t = 0
        return self._state, {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise InputError(f"action {action!r} is not in {self.action_space}")
        row = self._state * self.mdp.n_actions + int(action)
        lo, hi = self._indptr[row], self._indptr[row + 1]
        u = self.np_random.random()
        k = lo + int(np.searchsorted(np.cumsum(self._prob[lo:hi]), u, side="right"))
        k = min(k, hi - 1)  # guard against round-off when u ~ 1
        s_next, r = int(self._next[k]), float(self._reward[k])
        self._state = s_next
        self._t += 1
        terminated = bool(self.mdp.terminal[s_next])
        truncated = self.max_episode_steps is not None and self._t >= self.max_episode_steps
        return s_next, r, terminated, bool(truncated and not terminated), {}


def from_gymnasium(env, gamma: float = 0.99) -> TabularMDP:
    """Build a TabularMDP from a toy-text env's model ``env.unwrapped.P``.

    ``P[s][a]`` is a list of (prob, s', r, done). A state entered with done=True is made
    terminal (absorbing, zero reward): in FrozenLake holes and the goal are already absorbing;
    in CliffWalking and Taxi the episode ends on entering them, so their outgoing transitions
    never occur within an episode and are replaced by a self-loop. State indices stay the
    env's observation indices. Works for FrozenLake, CliffWalking, Taxi.
    """
    if isinstance(env, str):
        env = gym.make(env)
    base = env.unwrapped
    if not hasattr(base, "P"):
        raise InvalidMDPError(f"{type(base).__name__} has no model table .P; from_gymnasium needs one")
    if not isinstance(env.observation_space, gym.spaces.Discrete) or not isinstance(
        env.action_space, gym.spaces.Discrete
    ):
        raise InvalidMDPError("from_gymnasium needs Discrete observation and action spaces")
    S, A = int(env.observation_space.n), int(env.action_space.n)
    P = np.zeros((S, A, S))
    PR = np.zeros((S, A, S))  # Σ prob·reward per (s, a, s'), divided by P below
    done_in = np.zeros(S, dtype=bool)
    live_in = np.zeros(S, dtype=bool)
    for s in range(S):
        for a in range(A):
            for prob, s2, r, done in base.P[s][a]:
                s2 = int(s2)
                P[s, a, s2] += prob
                PR[s, a, s2] += prob * r
                if prob > 0 and done:
                    done_in[s2] = True
    # A state entered with done=False from a live state reachable from the start cannot be
    # terminal. (Terminal sources become absorbing; unreachable ones never occur.)
    initial = getattr(base, "initial_state_distrib", None)
    frontier = list(np.flatnonzero(np.asarray(initial) > 0)) if initial is not None else list(range(S))
    seen = np.zeros(S, dtype=bool)
    seen[frontier] = True
    while frontier:
        s = int(frontier.pop())
        if done_in[s]:
            continue
        for a in range(A):
            for prob, s2, _r, done in base.P[s][a]:
                s2 = int(s2)
                if prob > 0 and not done:
                    if s2 != s:
                        live_in[s2] = True
                    if not seen[s2]:
                        seen[s2] = True
                        frontier.append(s2)
    R = np.divide(PR, P, out=np.zeros_like(PR), where=P > 0)
    both = np.flatnonzero(done_in & live_in)
    if both.size:
        raise InvalidMDPError(
            f"state {int(both[0])} is entered both with done=True and done=False; "
            "it cannot be represented as a terminal state"
        )
    for s in np.flatnonzero(done_in):
        P[s] = 0.0
        P[s, :, s] = 1.0
        R[s] = 0.0
    if initial is not None:
        initial = np.asarray(initial, dtype=np.float64)
        initial = initial / initial.sum()
    names = _state_names(base, S)
    actions = _action_names(base, A)
    return TabularMDP(P, R, gamma, initial=initial, terminal=done_in, state_names=names,
                      action_names=actions, layout="SAS")


def _state_names(base, S):
    if hasattr(base, "decode") and type(base).__name__ == "TaxiEnv":  # (row, col, passenger, dest)
        return ["{},{},p{},d{}".format(*base.decode(s)) for s in range(S)]
    desc = getattr(base, "desc", None)
    if desc is not None and desc.size == S:  # FrozenLake: row/col plus tile letter
        ncol = desc.shape[1]
        return [f"{s // ncol},{s % ncol}:{desc.flat[s].decode()}" for s in range(S)]
    shape = getattr(base, "shape", None)
    if shape is not None and int(np.prod(shape)) == S:
        return [f"{s // shape[1]},{s % shape[1]}" for s in range(S)]
    return [str(s) for s in range(S)]


def _action_names(base, A):
    name = type(base).__name__
    if name == "FrozenLakeEnv":
        return ["left", "down", "right", "up"]
    if name == "CliffWalkingEnv":
        return ["up", "right", "down", "left"]
    if name == "TaxiEnv":
        return ["south", "north", "east", "west", "pickup", "dropoff"]
    return [str(a) for a in range(A)]
