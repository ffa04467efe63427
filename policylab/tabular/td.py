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

Developer note: the kernels inline the njit helpers of updates.py, rng.py, schedules.py and this
file (``inline="always"``: ~1.6× faster), and numba's on-disk cache only watches each kernel's
own file. After editing a helper, delete ``policylab/tabular/__pycache__/*.nb[ic]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numba
import numpy as np

from policylab.tabular.common import (
    TabularResult,
    Uniforms,
    assemble_trace,
    check_gamma,
    check_positive_int,
    initial_table,
    make_sampler,
    mdp_arrays,
    plain_config,
    policy_cdf,
    resolve_backend,
    resolve_problem,
    run_in_chunks,
)
from policylab.tabular.rng import (
    epsilon_greedy_action,
    make_rng_state,
    next_uniform,
    sample_cdf,
    sample_transition,
)
from policylab.tabular.schedules import Schedule, as_schedule, schedule_value
from policylab.tabular.updates import (
    bootstrap_discount,
    expected_sarsa_target,
    incremental_update,
    q_learning_target,
    sarsa_target,
    td_error,
    td_target,
)

__all__ = [
    "TDConfig",
    "expected_sarsa",
    "q_learning",
    "sarsa",
    "select_action",
    "td0_prediction",
    "td_update",
]

TD0, SARSA, EXPECTED_SARSA, Q_LEARNING = 0, 1, 2, 3
NAMES = {TD0: "td0", SARSA: "sarsa", EXPECTED_SARSA: "expected-sarsa", Q_LEARNING: "q-learning"}


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
def select_action(prediction, q, pi_cdf, eps_spec, t, n_s, s, u_explore, u_pick):
    """Behaviour policy at state s, step t: a ∼ π(·|s) (prediction) or ε-greedy(Q(s,·)) with
    ε = ε(t, N(s)); counts the visit N(s) += 1 first. Consumes exactly two uniforms."""
    n_s[s] += 1
    if prediction:
        return sample_cdf(pi_cdf[s], u_pick)
    return epsilon_greedy_action(q[s], schedule_value(eps_spec, t, n_s[s]), u_explore, u_pick)


@numba.njit(cache=True, inline="always")
def td_update(algo, q, v, n_sa, n_s, alpha_spec, eps_spec, gamma, t, s, a, r, s2, terminated, a2):
    """Apply one TD update for transition (s, a, r, s') in place; a2 is SARSA's a'.

    Returns (α, target y, δ, value before, value after) for the trace.
    """
    n_sa[s, a] += 1
    discount = bootstrap_discount(gamma, terminated)
    if algo == TD0:
        alpha = schedule_value(alpha_spec, t, n_s[s])
        before = v[s]
        target = td_target(r, discount, v[s2])
    else:
        alpha = schedule_value(alpha_spec, t, n_sa[s, a])
        before = q[s, a]
        if algo == SARSA:
            target = sarsa_target(r, discount, q[s2], max(a2, 0))
        elif algo == EXPECTED_SARSA:  # π_ε at s' is the policy the next step will act with
            target = expected_sarsa_target(r, discount, q[s2],
                                           schedule_value(eps_spec, t + 1, n_s[s2] + 1))
        else:
            target = q_learning_target(r, discount, q[s2])
    delta = td_error(target, before)
    after = incremental_update(before, alpha, delta)
    if algo == TD0:
        v[s] = after
    else:
        q[s, a] = after
    return alpha, target, delta, before, after


# ---------------------------------------------------------------------------- compiled path
@numba.njit(cache=True)
def _kernel(algo, indptr, next_state, prob, reward, init_cdf, terminal, gamma, max_ep,
            alpha_spec, eps_spec, pi_cdf, q, v, n_sa, n_s, rng, carry, carry_ret, n_steps,
            trace_i, trace_f):
    """Run n_steps of `algo` on the CSR MDP; resumable: carry = [t, s, a, ep_len, episode]
    (s = −1: start an episode; a = −1: choose an action), carry_ret = [episode return]."""
    n_actions = q.shape[1]
    prediction = algo == TD0
    tracing = trace_i.shape[0] > 0
    t, s, a, ep_len, episode = carry[0], carry[1], carry[2], carry[3], carry[4]
    ep_ret = carry_ret[0]
    returns = np.empty(64)
    lengths = np.empty(64, np.int64)
    n_done = 0
    for i in range(n_steps):
        if s < 0:
            s = sample_cdf(init_cdf, next_uniform(rng))
            ep_len, ep_ret = 0, 0.0
        if a < 0:
            a = select_action(prediction, q, pi_cdf, eps_spec, t, n_s, s,
                              next_uniform(rng), next_uniform(rng))
        j = sample_transition(indptr, prob, s * n_actions + a, next_uniform(rng))
        s2, r = next_state[j], reward[j]
        ep_len += 1
        ep_ret += r
        terminated = terminal[s2]
        truncated = (not terminated) and max_ep > 0 and ep_len >= max_ep
        a2 = -1
        if algo == SARSA and not terminated:
            a2 = select_action(prediction, q, pi_cdf, eps_spec, t + 1, n_s, s2,
                               next_uniform(rng), next_uniform(rng))
        alpha, target, delta, before, after = td_update(algo, q, v, n_sa, n_s, alpha_spec,
                                                        eps_spec, gamma, t, s, a, r, s2,
                                                        terminated, a2)
        if tracing:
            trace_i[i, 0], trace_i[i, 1], trace_i[i, 2], trace_i[i, 3] = t, episode, s, a
            trace_i[i, 4], trace_i[i, 5] = s2, int(terminated) + 2 * int(truncated)
            trace_i[i, 6] = a2
            trace_f[i, 0], trace_f[i, 1], trace_f[i, 2] = r, alpha, target
            trace_f[i, 3], trace_f[i, 4], trace_f[i, 5] = delta, before, after
        t += 1
        if terminated or truncated:
            if n_done == returns.shape[0]:  # grow the episode buffers
                returns = np.concatenate((returns, np.empty(n_done)))
                lengths = np.concatenate((lengths, np.empty(n_done, np.int64)))
            returns[n_done], lengths[n_done] = ep_ret, ep_len
            n_done += 1
            episode += 1
            s, a = -1, -1
        else:
            s, a = s2, a2
    carry[0], carry[1], carry[2], carry[3], carry[4] = t, s, a, ep_len, episode
    carry_ret[0] = ep_ret
    return returns[:n_done].copy(), lengths[:n_done].copy()


# ---------------------------------------------------------------------------- Python path
def _python(algo, sampler, u, gamma, alpha_spec, eps_spec, pi_cdf, q, v, n_sa, n_s, carry,
            carry_ret, n_steps, trace_i, trace_f):
    """The same loop as :func:`_kernel`, one Python iteration per step, over any sampler."""
    prediction = algo == TD0
    tracing = trace_i.shape[0] > 0
    t, s, a, ep_len, episode = (int(x) for x in carry)
    ep_ret = float(carry_ret[0])
    returns, lengths = [], []
    for i in range(n_steps):
        if s < 0:
            s = sampler.reset()
            ep_len, ep_ret = 0, 0.0
        if a < 0:
            a = int(select_action(prediction, q, pi_cdf, eps_spec, t, n_s, s, u(), u()))
        s2, r, terminated, truncated = sampler.step(s, a)
        ep_len += 1
        ep_ret += r
        a2 = -1
        if algo == SARSA and not terminated:
            a2 = int(select_action(prediction, q, pi_cdf, eps_spec, t + 1, n_s, s2, u(), u()))
        alpha, target, delta, before, after = td_update(algo, q, v, n_sa, n_s, alpha_spec,
                                                        eps_spec, gamma, t, s, a, r, s2,
                                                        terminated, a2)
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
    carry[:] = (t, s, a, ep_len, episode)
    carry_ret[0] = ep_ret
    return np.array(returns, dtype=np.float64), np.array(lengths, dtype=np.int64)


# ---------------------------------------------------------------------------- driver
def _run(algo, env_or_mdp, policy, cfg: TDConfig, backend: str, progress: bool) -> TabularResult:
    """Validate everything, then run `algo` in chunks (for the progress bar) on a backend."""
    steps = check_positive_int(cfg.steps, "steps")
    alpha = as_schedule(cfg.alpha, "alpha", zero_ok=False)
    epsilon = as_schedule(cfg.epsilon, "epsilon", zero_ok=True)
    make_rng_state(cfg.seed)  # validates seed
    problem = resolve_problem(env_or_mdp, cfg.max_episode_steps)
    S, A = problem.n_states, problem.n_actions
    gamma = check_gamma(cfg.gamma, problem.mdp.gamma if problem.mdp is not None else None)
    pi_cdf = policy_cdf(policy, S, A) if algo == TD0 else np.ones((S, A))
    q = initial_table(cfg.initial_value if algo != TD0 else 0.0, (S, A))
    v = initial_table(cfg.initial_value if algo == TD0 else 0.0, (S,))
    backend = resolve_backend(backend, problem)

    n_sa, n_s = np.zeros((S, A), np.int64), np.zeros(S, np.int64)
    carry, carry_ret = np.array([0, -1, -1, 0, 0], np.int64), np.zeros(1)
    a_spec, e_spec = alpha.spec, epsilon.spec
    if backend == "compiled":
        arrays = mdp_arrays(problem.mdp)
        rng = make_rng_state(cfg.seed)
        max_ep = cfg.max_episode_steps or 0

        def run(n, ti, tf):
            return _kernel(algo, *arrays, gamma, max_ep, a_spec, e_spec, pi_cdf, q, v, n_sa,
                           n_s, rng, carry, carry_ret, n, ti, tf)
    else:
        u = Uniforms(cfg.seed)
        sampler = make_sampler(problem, u, cfg.seed, cfg.max_episode_steps)

        def run(n, ti, tf):
            return _python(algo, sampler, u, gamma, a_spec, e_spec, pi_cdf, q, v, n_sa, n_s,
                           carry, carry_ret, n, ti, tf)

    def run_chunk(n):
        ti = np.zeros((n if cfg.trace else 0, 7), np.int64)   # (n, 7) trace ints
        tf = np.zeros((n if cfg.trace else 0, 6), np.float64)  # (n, 6) trace floats
        return (*run(n, ti, tf), ti, tf)

    chunk = max(1_000 if backend == "python" else 100_000, math.ceil(steps / 100))
    out = run_in_chunks(run_chunk, steps, chunk, progress, NAMES[algo], "step")

    config = {f.name: plain_config(getattr(cfg, f.name)) for f in fields(cfg)} | {"gamma": gamma}
    control = algo != TD0
    return TabularResult(
        algorithm=NAMES[algo],
        V=q.max(axis=1) if control else v,
        Q=q if control else None,
        policy=np.argmax(q, axis=1) if control else None,
        episode_returns=np.concatenate([o[0] for o in out]),
        episode_lengths=np.concatenate([o[1] for o in out]),
        visits=n_sa,
        steps=steps,
        backend=backend,
        config=config,
        trace=assemble_trace([o[2] for o in out], [o[3] for o in out]) if cfg.trace else None,
    )


_CONTROL_DOC = """{title}

    Args:
        env_or_mdp: a TabularMDP, or a gymnasium.Env with Discrete observation/action spaces.
        steps: number of environment steps (= updates), ≥ 1.
        alpha: step size α ∈ (0, 1] or a Schedule of (t, N(s, a)), e.g. ``inverse_count()``.
        epsilon: exploration ε ∈ [0, 1] or a Schedule of (t, N(s)).
        gamma: discount; defaults to ``mdp.gamma``, required for a gymnasium env.
        seed: seeds the random stream; the compiled and Python paths give the same numbers.
        max_episode_steps: truncate episodes (truncated transitions still bootstrap).
        initial_value: Q₀, a number or an (S, A) array.
        trace: keep every update in ``result.trace`` (TRACE_DTYPE rows).
        backend: "auto" (compiled for a TabularMDP, Python for an env), "compiled", "python".
        progress: show a tqdm bar (the work runs in ~100 chunks; numbers are unchanged).

    Returns:
        TabularResult with Q, V = max_a Q, the greedy policy, episode returns and lengths.
    """


def _control(algo):
    def learner(env_or_mdp, steps, alpha, epsilon, gamma=None, seed=0, *,
                max_episode_steps=None, initial_value=0.0, trace=False, backend="auto",
                progress=False) -> TabularResult:
        cfg = TDConfig(steps, alpha, epsilon, gamma, seed, max_episode_steps, initial_value, trace)
        return _run(algo, env_or_mdp, None, cfg, backend, progress)

    return learner


q_learning = _control(Q_LEARNING)
q_learning.__name__ = q_learning.__qualname__ = "q_learning"
q_learning.__doc__ = _CONTROL_DOC.format(
    title="Q-learning (off-policy TD control): Q(s,a) ← Q(s,a) + α[r + γ_t max_a' Q(s',a') − Q(s,a)].")
sarsa = _control(SARSA)
sarsa.__name__ = sarsa.__qualname__ = "sarsa"
sarsa.__doc__ = _CONTROL_DOC.format(
    title="SARSA (on-policy TD control): Q(s,a) ← Q(s,a) + α[r + γ_t Q(s',a') − Q(s,a)], a' ∼ π_ε.")
expected_sarsa = _control(EXPECTED_SARSA)
expected_sarsa.__name__ = expected_sarsa.__qualname__ = "expected_sarsa"
expected_sarsa.__doc__ = _CONTROL_DOC.format(
    title="Expected SARSA: Q(s,a) ← Q(s,a) + α[r + γ_t Σ_a' π_ε(a'|s') Q(s',a') − Q(s,a)].")


def td0_prediction(env_or_mdp, policy, steps, alpha, gamma=None, seed=0, *,
                   max_episode_steps=None, initial_value=0.0, trace=False, backend="auto",
                   progress=False) -> TabularResult:
    """TD(0) prediction of V^π: V(s) ← V(s) + α[r + γ_t V(s') − V(s)], actions a ∼ π(·|s).

    ``policy`` is (S,) action indices or (S, A) probabilities; ``alpha`` a number in (0, 1]
    or a Schedule of (t, N(s)). Other arguments as in :func:`q_learning`. Returns a
    TabularResult with V (Q and policy are None).
    """
    cfg = TDConfig(steps, alpha, 0.0, gamma, seed, max_episode_steps, initial_value, trace)
    return _run(TD0, env_or_mdp, policy, cfg, backend, progress)
