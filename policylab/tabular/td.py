"""Temporal-difference learning: TD(0) prediction, SARSA, expected SARSA and Q-learning.

    TD(0)            V(s) ← V(s) + α[r + γ_t V(s') − V(s)]
    SARSA            Q(s,a) ← Q(s,a) + α[r + γ_t Q(s',a') − Q(s,a)],        a' ∼ π_ε(s')
    expected SARSA   Q(s,a) ← Q(s,a) + α[r + γ_t Σ_a' π_ε(a'|s') Q(s',a') − Q(s,a)]
    Q-learning       Q(s,a) ← Q(s,a) + α[r + γ_t max_a' Q(s',a') − Q(s,a)]

with γ_t = 0 on termination and γ on truncation (Gymnasium semantics). The equations live
in :mod:`policylab.tabular.updates`; :func:`td_update` applies one of them to the table.
One step of experience is produced two ways that consume the same random numbers in the
same order: :func:`_kernel` (numba, TabularMDP only, no Python per step) and :func:`_python`
(any Discrete Gymnasium env, or a TabularMDP); so both give identical numbers per seed.
``seeds=[...]`` runs independent runs in one compiled call, in parallel over cores
(:func:`_kernel_many`, numba ``prange``), each seed's numbers equal to a call with that seed.

Developer note: the kernels inline the njit helpers of updates.py, rng.py, schedules.py,
sampling.py and this file (``inline="always"``), and numba's on-disk cache only watches each
kernel's own file. After editing a helper, delete ``policylab/tabular/__pycache__/*.nb[ic]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numba
import numpy as np

from policylab.errors import InputError
from policylab.tabular.inputs import (
    check_count,
    check_finite_table,
    check_gamma,
    check_seeds,
    initial_table,
    mdp_arrays,
    resolve_backend,
    resolve_problem,
)
from policylab.tabular.progress import run_in_chunks
from policylab.tabular.result import TabularResult, assemble_trace, plain_config
from policylab.tabular.rng import make_rng_state, next_uniform, sample_cdf, sample_transition
from policylab.tabular.sampling import Uniforms, make_sampler, policy_cdf, select_action
from policylab.tabular.schedules import (
    Schedule,
    as_schedule,
    schedule_at,
    schedule_constant,
)
from policylab.tabular.updates import (
    bootstrap_discount,
    expected_sarsa_target,
    incremental_update,
    q_learning_target,
    sarsa_target,
    td_error,
    td_target,
)

__all__ = ["TDConfig", "expected_sarsa", "q_learning", "sarsa", "td0_prediction", "td_update"]

TD0, SARSA, EXPECTED_SARSA, Q_LEARNING = 0, 1, 2, 3
NAMES = {TD0: "td0", SARSA: "sarsa", EXPECTED_SARSA: "expected-sarsa", Q_LEARNING: "q-learning"}
CARRY = 6  # carry = [t, s, a, ep_len, episode, episodes stored]


@dataclass(frozen=True)
class TDConfig:
    """Hyper-parameters of the TD learners (defaults: Sutton & Barto 2018, ch. 6)."""

    steps: int                             #: environment steps = number of updates
    alpha: float | Schedule = 0.1          #: step size α ∈ (0, 1], or a Schedule of (t, N(s,a))
    epsilon: float | Schedule = 0.1        #: ε of the ε-greedy behaviour policy, or a Schedule of (t, N(s))
    gamma: float | None = None             #: discount γ; default mdp.gamma, required for an env
    seed: int = 0                          #: seeds the SplitMix64 stream (and the env's first reset)
    max_episode_steps: int | None = None   #: truncate episodes after this many steps (bootstraps)
    initial_value: float = 0.0             #: Q₀ (or V₀), a number or an (S, A) / (S,) array
    trace: bool = False                    #: record every update in TabularResult.trace


# ---------------------------------------------------------------------------- one step
@numba.njit(cache=True, inline="always")
def td_update(algo, q, v, alpha, eps_next, gamma, s, a, r, s2, terminated, a2):
    """Apply one TD update for transition (s, a, r, s') in place with step size ``alpha``;
    a2 is SARSA's a', eps_next expected SARSA's ε at s'. Returns (target y, δ, before, after)."""
    discount = bootstrap_discount(gamma, terminated)
    if algo == TD0:
        before = v[s]
        target = td_target(r, discount, v[s2])
    else:
        before = q[s, a]
        if algo == Q_LEARNING:
            target = q_learning_target(r, discount, q[s2])
        elif algo == SARSA:
            target = sarsa_target(r, discount, q[s2], max(a2, 0))
        else:  # π_ε at s' is the policy the next step will act with
            target = expected_sarsa_target(r, discount, q[s2], eps_next)
    delta = td_error(target, before)
    after = incremental_update(before, alpha, delta)
    if algo == TD0:
        v[s] = after
    else:
        q[s, a] = after
    return target, delta, before, after


@numba.njit(cache=True, inline="always")
def _step_sizes(algo, alpha_c, alpha_spec, eps_c, eps_spec, t, n_sa, n_s, s, a, s2):
    """(α, ε at s') for the update at step t: α(t, N(s,a)) for control, α(t, N(s)) for TD(0)."""
    n_sa[s, a] += 1
    alpha = schedule_at(alpha_c, alpha_spec, t, n_s[s] if algo == TD0 else n_sa[s, a])
    eps_next = 0.0
    if algo == EXPECTED_SARSA:
        eps_next = schedule_at(eps_c, eps_spec, t + 1, n_s[s2] + 1)
    return alpha, eps_next


# ---------------------------------------------------------------------------- compiled path
@numba.njit(cache=True, inline="always")
def _loop(algo, indptr, next_state, prob, reward, init_cdf, terminal, gamma, max_ep,
          alpha_spec, eps_spec, pi_cdf, q, v, n_sa, n_s, rng, carry, carry_ret, n_steps,
          ep_returns, ep_lengths, trace_i, trace_f):
    """The step loop of :func:`_kernel`, inlined once per algorithm so that ``algo`` is a
    constant there and its branches compile away (≈3× faster than one generic loop)."""
    n_actions = q.shape[1]
    prediction = algo == TD0
    tracing = trace_i.shape[0] > 0
    alpha_c, eps_c = schedule_constant(alpha_spec), schedule_constant(eps_spec)
    t, s, a, ep_len, episode, n_done = carry[0], carry[1], carry[2], carry[3], carry[4], carry[5]
    ep_ret = carry_ret[0]
    cap = ep_returns.shape[0]
    i = 0
    while i < n_steps and n_done < cap:
        if s < 0:
            s = sample_cdf(init_cdf, next_uniform(rng))
            ep_len, ep_ret = 0, 0.0
        if a < 0:
            n_s[s] += 1
            a = select_action(prediction, q, pi_cdf, schedule_at(eps_c, eps_spec, t, n_s[s]), s,
                              next_uniform(rng), next_uniform(rng))
        j = sample_transition(indptr, prob, s * n_actions + a, next_uniform(rng))
        s2, r = next_state[j], reward[j]
        ep_len += 1
        ep_ret += r
        terminated = terminal[s2]
        truncated = (not terminated) and max_ep > 0 and ep_len >= max_ep
        a2 = -1
        if algo == SARSA and not terminated:
            n_s[s2] += 1
            a2 = select_action(False, q, pi_cdf, schedule_at(eps_c, eps_spec, t + 1, n_s[s2]),
                               s2, next_uniform(rng), next_uniform(rng))
        alpha, eps_next = _step_sizes(algo, alpha_c, alpha_spec, eps_c, eps_spec, t, n_sa, n_s,
                                      s, a, s2)
        target, delta, before, after = td_update(algo, q, v, alpha, eps_next, gamma,
                                                 s, a, r, s2, terminated, a2)
        if tracing:
            trace_i[i, 0], trace_i[i, 1], trace_i[i, 2], trace_i[i, 3] = t, episode, s, a
            trace_i[i, 4], trace_i[i, 5] = s2, int(terminated) + 2 * int(truncated)
            trace_i[i, 6] = a2
            trace_f[i, 0], trace_f[i, 1], trace_f[i, 2] = r, alpha, target
            trace_f[i, 3], trace_f[i, 4], trace_f[i, 5] = delta, before, after
        t += 1
        i += 1
        if terminated or truncated:
            ep_returns[n_done], ep_lengths[n_done] = ep_ret, ep_len
            n_done += 1
            episode += 1
            s, a = -1, -1
        else:
            s, a = s2, a2
    carry[0], carry[1], carry[2], carry[3], carry[4], carry[5] = t, s, a, ep_len, episode, n_done
    carry_ret[0] = ep_ret
    return i


@numba.njit(cache=True)
def _kernel(algo, indptr, next_state, prob, reward, init_cdf, terminal, gamma, max_ep,
            alpha_spec, eps_spec, pi_cdf, q, v, n_sa, n_s, rng, carry, carry_ret, n_steps,
            ep_returns, ep_lengths, trace_i, trace_f):
    """Run up to n_steps of `algo` on the CSR MDP; returns the steps done, fewer only when
    the episode buffers ep_returns/ep_lengths (cap,) fill up (the caller grows them and calls
    again). Resumable: carry = [t, s, a, ep_len, episode, episodes stored] (s = −1: start an
    episode; a = −1: choose an action), carry_ret = [return of the running episode]."""
    # the same call four times: each inlines a copy of the loop with `algo` a constant
    if algo == Q_LEARNING:
        return _loop(Q_LEARNING, indptr, next_state, prob, reward, init_cdf, terminal, gamma, max_ep,
                     alpha_spec, eps_spec, pi_cdf, q, v, n_sa, n_s, rng, carry, carry_ret, n_steps,
                     ep_returns, ep_lengths, trace_i, trace_f)
    if algo == SARSA:
        return _loop(SARSA, indptr, next_state, prob, reward, init_cdf, terminal, gamma, max_ep,
                     alpha_spec, eps_spec, pi_cdf, q, v, n_sa, n_s, rng, carry, carry_ret, n_steps,
                     ep_returns, ep_lengths, trace_i, trace_f)
    if algo == EXPECTED_SARSA:
        return _loop(EXPECTED_SARSA, indptr, next_state, prob, reward, init_cdf, terminal, gamma, max_ep,
                     alpha_spec, eps_spec, pi_cdf, q, v, n_sa, n_s, rng, carry, carry_ret, n_steps,
                     ep_returns, ep_lengths, trace_i, trace_f)
    return _loop(TD0, indptr, next_state, prob, reward, init_cdf, terminal, gamma, max_ep,
                     alpha_spec, eps_spec, pi_cdf, q, v, n_sa, n_s, rng, carry, carry_ret, n_steps,
                     ep_returns, ep_lengths, trace_i, trace_f)


@numba.njit(cache=True, parallel=True)
def _kernel_many(algo, indptr, next_state, prob, reward, init_cdf, terminal, gamma, max_ep,
                 alpha_spec, eps_spec, pi_cdf, q, v, n_sa, n_s, rng, carry, carry_ret, todo,
                 ep_returns, ep_lengths, done):
    """:func:`_kernel` for K independent runs in parallel over cores: the state arrays carry
    a leading seed axis (q (K, S, A), rng (K, 1), carry (K, 6), ep_returns (K, cap) ...);
    done[k] = steps run k made of its todo[k]. No trace."""
    no_ti, no_tf = np.zeros((0, 7), np.int64), np.zeros((0, 6))
    for k in numba.prange(q.shape[0]):
        done[k] = _kernel(algo, indptr, next_state, prob, reward, init_cdf, terminal, gamma,
                          max_ep, alpha_spec, eps_spec, pi_cdf, q[k], v[k], n_sa[k], n_s[k],
                          rng[k], carry[k], carry_ret[k], todo[k], ep_returns[k],
                          ep_lengths[k], no_ti, no_tf)


class _Runs:
    """State of K runs of the compiled kernel (leading axis = seed), advanced chunk by chunk."""

    def __init__(self, algo, arrays, gamma, max_ep, a_spec, e_spec, pi_cdf, q0, v0, seeds,
                 steps):
        K = len(seeds)
        self.head = (algo, *arrays, gamma, max_ep, a_spec, e_spec, pi_cdf)
        self.q, self.v = np.stack([q0] * K), np.stack([v0] * K)  # (K, S, A), (K, S)
        self.n_sa = np.zeros(self.q.shape, np.int64)
        self.n_s = np.zeros(self.v.shape, np.int64)
        self.rng = np.stack([make_rng_state(s) for s in seeds])  # (K, 1)
        self.carry = np.tile(np.array([0, -1, -1, 0, 0, 0], np.int64), (K, 1))  # (K, 6)
        self.carry_ret = np.zeros((K, 1))
        cap = max(64, min(steps, 1 << 14))
        self.ep_returns, self.ep_lengths = np.empty((K, cap)), np.empty((K, cap), np.int64)

    def _grow(self):
        K, cap = self.ep_returns.shape
        self.ep_returns = np.concatenate([self.ep_returns, np.empty((K, cap))], axis=1)
        self.ep_lengths = np.concatenate([self.ep_lengths, np.empty((K, cap), np.int64)], axis=1)

    def run(self, n, trace_i, trace_f):
        """n more steps on every run; the trace (one run only) fills trace_i/trace_f (n, ·).

        Untraced runs, even a single one, go through :func:`_kernel_many` on at most one thread
        per run: measured on FrozenLake 4×4 and 8×8, one stream does ≈ 25 % more updates per
        CPU-second that way than through a direct call of :func:`_kernel` (the same numbers:
        the same compiled loop, reached through numba's parallel pipeline)."""
        todo = np.full(len(self.q), n, np.int64)
        while todo.any():
            if trace_i.shape[0]:  # one run with its trace: the kernel itself
                off = n - todo[0]
                todo[0] -= _kernel(*self.head, self.q[0], self.v[0], self.n_sa[0], self.n_s[0],
                                   self.rng[0], self.carry[0], self.carry_ret[0], todo[0],
                                   self.ep_returns[0], self.ep_lengths[0], trace_i[off:],
                                   trace_f[off:])
            else:
                done = np.zeros_like(todo)
                threads = numba.get_num_threads()
                numba.set_num_threads(min(threads, len(self.q)))  # no idle spinning thread
                try:
                    _kernel_many(*self.head, self.q, self.v, self.n_sa, self.n_s, self.rng,
                                 self.carry, self.carry_ret, todo, self.ep_returns,
                                 self.ep_lengths, done)
                finally:
                    numba.set_num_threads(threads)
                todo -= done
            if todo.any():
                self._grow()
        return n

    def episodes(self, k):
        n = self.carry[k, 5]
        return self.ep_returns[k, :n].copy(), self.ep_lengths[k, :n].copy()


# ---------------------------------------------------------------------------- Python path
def _python(algo, sampler, u, gamma, alpha_spec, eps_spec, pi_cdf, q, v, n_sa, n_s, carry,
            carry_ret, n_steps, trace_i, trace_f):
    """The same loop as :func:`_kernel`, one Python iteration per step, over any sampler."""
    prediction = algo == TD0
    tracing = trace_i.shape[0] > 0
    alpha_c, eps_c = schedule_constant(alpha_spec), schedule_constant(eps_spec)
    t, s, a, ep_len, episode = (int(x) for x in carry[:5])
    ep_ret = float(carry_ret[0])
    returns, lengths = [], []
    for i in range(n_steps):
        if s < 0:
            s = sampler.reset()
            ep_len, ep_ret = 0, 0.0
        if a < 0:
            n_s[s] += 1
            eps = schedule_at(eps_c, eps_spec, t, n_s[s])
            a = int(select_action(prediction, q, pi_cdf, eps, s, u(), u()))
        s2, r, terminated, truncated = sampler.step(s, a)
        ep_len += 1
        ep_ret += r
        a2 = -1
        if algo == SARSA and not terminated:
            n_s[s2] += 1
            eps = schedule_at(eps_c, eps_spec, t + 1, n_s[s2])
            a2 = int(select_action(False, q, pi_cdf, eps, s2, u(), u()))
        alpha, eps_next = _step_sizes(algo, alpha_c, alpha_spec, eps_c, eps_spec, t, n_sa, n_s,
                                      s, a, s2)
        target, delta, before, after = td_update(algo, q, v, alpha, eps_next, gamma,
                                                 s, a, r, s2, terminated, a2)
        if tracing:
            trace_i[i] = (t, episode, s, a, s2, int(terminated) + 2 * int(truncated), a2)
            trace_f[i] = (r, alpha, target, delta, before, after)
        t += 1
        if terminated or truncated:
            returns.append(ep_ret)
            lengths.append(ep_len)
            episode += 1
            s, a = -1, -1
        else:
            s, a = s2, a2
    carry[:5] = (t, s, a, ep_len, episode)
    carry_ret[0] = ep_ret
    return np.array(returns, dtype=np.float64), np.array(lengths, dtype=np.int64)


def _run_python(algo, problem, seed, cfg, gamma, a_spec, e_spec, pi_cdf, q0, v0, steps, chunk,
                progress, trace_chunk):
    """One run of :func:`_python` in chunks: (q, v, n_sa, returns, lengths, trace chunks)."""
    S, A = q0.shape
    q, v = q0.copy(), v0.copy()
    n_sa, n_s = np.zeros((S, A), np.int64), np.zeros(S, np.int64)
    carry, carry_ret = np.array([0, -1, -1, 0, 0, 0], np.int64), np.zeros(1)
    u = Uniforms(seed)
    sampler = make_sampler(problem, u, seed, cfg.max_episode_steps)

    def run_chunk(n):
        ti, tf = trace_chunk(n)
        res = _python(algo, sampler, u, gamma, a_spec, e_spec, pi_cdf, q, v, n_sa, n_s, carry,
                      carry_ret, n, ti, tf)
        check_finite_table(v if algo == TD0 else q, "V" if algo == TD0 else "Q", carry[0])
        return (*res, ti, tf)

    out = run_in_chunks(run_chunk, steps, chunk, progress, NAMES[algo], "step")
    return (q, v, n_sa, np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out]),
            [o[2] for o in out], [o[3] for o in out])


# ---------------------------------------------------------------------------- driver
def _run(algo, env_or_mdp, policy, cfg: TDConfig, backend: str, progress: bool, seeds):
    """Validate everything, then run `algo` in chunks (for the progress bar) on a backend;
    one TabularResult, or a list of them (one per seed) when ``seeds`` is given."""
    steps = check_count(cfg.steps, "steps")
    alpha = as_schedule(cfg.alpha, "alpha", zero_ok=False)
    epsilon = as_schedule(cfg.epsilon, "epsilon", zero_ok=True)
    seed_list = check_seeds(cfg.seed, seeds)
    problem = resolve_problem(env_or_mdp, cfg.max_episode_steps)
    S, A = problem.n_states, problem.n_actions
    gamma = check_gamma(cfg.gamma, problem.mdp.gamma if problem.mdp is not None else None)
    pi_cdf = policy_cdf(policy, S, A) if algo == TD0 else np.ones((S, A))
    q0 = initial_table(cfg.initial_value if algo != TD0 else 0.0, (S, A))
    v0 = initial_table(cfg.initial_value if algo == TD0 else 0.0, (S,))
    backend = resolve_backend(backend, problem)
    if cfg.trace and seeds is not None:
        raise InputError("trace=True records one run: pass seed, not seeds")
    a_spec, e_spec = alpha.spec, epsilon.spec
    chunk = max(1_000 if backend == "python" else 100_000, math.ceil(steps / 100))
    control = algo != TD0

    def trace_chunk(n):
        return (np.zeros((n if cfg.trace else 0, 7), np.int64),   # (n, 7) trace ints
                np.zeros((n if cfg.trace else 0, 6), np.float64))  # (n, 6) trace floats

    if backend == "compiled":
        runs = _Runs(algo, mdp_arrays(problem.mdp), gamma, cfg.max_episode_steps or 0, a_spec,
                     e_spec, pi_cdf, q0, v0, seed_list, steps)
        done = [0]

        def run_chunk(n):
            ti, tf = trace_chunk(n)
            done[0] += runs.run(n, ti, tf)
            check_finite_table(runs.v if algo == TD0 else runs.q, "V" if algo == TD0 else "Q",
                               done[0])
            return ti, tf

        out = run_in_chunks(run_chunk, steps, chunk, progress, NAMES[algo], "step")
        per_seed = [(runs.q[k], runs.v[k], runs.n_sa[k], *runs.episodes(k),
                     [o[0] for o in out], [o[1] for o in out]) for k in range(len(seed_list))]
    else:
        per_seed = [_run_python(algo, problem, seed, cfg, gamma, a_spec, e_spec, pi_cdf, q0, v0,
                                steps, chunk, progress, trace_chunk) for seed in seed_list]

    base = {f.name: plain_config(getattr(cfg, f.name)) for f in fields(cfg)} | {"gamma": gamma}
    results = [TabularResult(
        algorithm=NAMES[algo],
        V=q.max(axis=1) if control else v,
        Q=q if control else None,
        policy=np.argmax(q, axis=1) if control else None,
        episode_returns=rets, episode_lengths=lens, visits=n_sa, steps=steps, backend=backend,
        config=base | {"seed": seed},
        trace=assemble_trace(tis, tfs) if cfg.trace else None,
    ) for seed, (q, v, n_sa, rets, lens, tis, tfs) in zip(seed_list, per_seed)]
    return results if seeds is not None else results[0]


def q_learning(env_or_mdp, steps, alpha, epsilon, gamma=None, seed=0, *, seeds=None,
               max_episode_steps=None, initial_value=0.0, trace=False, backend="auto",
               progress=False):
    """Q-learning (off-policy TD control, Watkins 1989):

        Q(s,a) ← Q(s,a) + α[r + γ_t max_a' Q(s',a') − Q(s,a)],  a ∼ ε-greedy(Q(s,·))

    Args:
        env_or_mdp: a TabularMDP, or a gymnasium.Env with Discrete observation/action spaces.
        steps: number of environment steps (= updates), 1 ≤ steps ≤ MAX_STEPS.
        alpha: step size α ∈ (0, 1] or a Schedule of (t, N(s, a)), e.g. ``inverse_count()``.
        epsilon: exploration ε ∈ [0, 1] or a Schedule of (t, N(s)).
        gamma: discount; defaults to ``mdp.gamma``, required for a gymnasium env.
        seed: seeds the random stream; the compiled and Python paths give the same numbers.
        seeds: a list of seeds: independent runs in one compiled call, in parallel over cores;
            returns one TabularResult per seed, each equal to a call with ``seed=`` that seed.
        max_episode_steps: truncate episodes (truncated transitions still bootstrap).
        initial_value: Q₀, a number or an (S, A) array.
        trace: keep every update in ``result.trace`` (TRACE_DTYPE rows; one seed only).
        backend: "auto" (compiled for a TabularMDP, Python for an env), "compiled", "python".
        progress: show a tqdm bar (the work runs in ~100 chunks; numbers are unchanged).

    Returns:
        TabularResult with Q, V = max_a Q, the greedy policy, episode returns and lengths
        (a list of them with ``seeds``). A NaN/inf reward from an env raises DivergenceError.
    """
    cfg = TDConfig(steps, alpha, epsilon, gamma, seed, max_episode_steps, initial_value, trace)
    return _run(Q_LEARNING, env_or_mdp, None, cfg, backend, progress, seeds)


def sarsa(env_or_mdp, steps, alpha, epsilon, gamma=None, seed=0, *, seeds=None,
          max_episode_steps=None, initial_value=0.0, trace=False, backend="auto",
          progress=False):
    """SARSA (on-policy TD control, Rummery & Niranjan 1994):

        Q(s,a) ← Q(s,a) + α[r + γ_t Q(s',a') − Q(s,a)],  a, a' ∼ ε-greedy(Q)

    a' is drawn at s' before the update and is the next action taken. Arguments and result
    as in :func:`q_learning`.
    """
    cfg = TDConfig(steps, alpha, epsilon, gamma, seed, max_episode_steps, initial_value, trace)
    return _run(SARSA, env_or_mdp, None, cfg, backend, progress, seeds)


def expected_sarsa(env_or_mdp, steps, alpha, epsilon, gamma=None, seed=0, *, seeds=None,
                   max_episode_steps=None, initial_value=0.0, trace=False, backend="auto",
                   progress=False):
    """Expected SARSA (van Seijen et al. 2009):

        Q(s,a) ← Q(s,a) + α[r + γ_t Σ_a' π_ε(a'|s') Q(s',a') − Q(s,a)]

    π_ε is the ε-greedy policy the next step acts with (ε at s'). Arguments and result as in
    :func:`q_learning`.
    """
    cfg = TDConfig(steps, alpha, epsilon, gamma, seed, max_episode_steps, initial_value, trace)
    return _run(EXPECTED_SARSA, env_or_mdp, None, cfg, backend, progress, seeds)


def td0_prediction(env_or_mdp, policy, steps, alpha, gamma=None, seed=0, *, seeds=None,
                   max_episode_steps=None, initial_value=0.0, trace=False, backend="auto",
                   progress=False):
    """TD(0) prediction of V^π: V(s) ← V(s) + α[r + γ_t V(s') − V(s)], actions a ∼ π(·|s).

    ``policy`` is (S,) action indices or (S, A) probabilities; ``alpha`` a number in (0, 1]
    or a Schedule of (t, N(s)). Other arguments as in :func:`q_learning`. Returns a
    TabularResult with V (Q and policy are None), or a list of them with ``seeds``.
    """
    cfg = TDConfig(steps, alpha, 0.0, gamma, seed, max_episode_steps, initial_value, trace)
    return _run(TD0, env_or_mdp, policy, cfg, backend, progress, seeds)
