"""Planning when the model is known (lecture §5): value iteration and policy iteration."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from policylab.errors import DivergenceError, InputError, InvalidMDPError
from policylab.planning.bellman import greedy_policy, policy_model, q_from_v
from policylab.planning.evaluation import evaluate_policy


@dataclass
class PlanningResult:
    """Output of a planning algorithm.

    V (S,), Q (S, A), policy (S,) greedy action indices, iterations (sweeps or improvement
    steps), residual (the stopping quantity: for value iteration a bound on ‖V − V*‖∞),
    history (residual per iteration), method name and whether the stopping rule was met.
    """

    V: np.ndarray
    Q: np.ndarray
    policy: np.ndarray
    iterations: int
    residual: float
    history: np.ndarray = field(repr=False)
    method: str = ""
    converged: bool = True


def _check_tol(tol, max_iter):
    if not (isinstance(tol, (int, float)) and tol > 0 and np.isfinite(tol)):
        raise InputError(f"tol must be a positive finite number, got {tol!r}")
    if int(max_iter) < 1:
        raise InputError(f"max_iter must be >= 1, got {max_iter!r}")


def _check_value_range(mdp) -> None:
    """Refuse, before any work, rewards whose values overflow float64: |V| ≤ max|R|/(1−γ)."""
    r_max = float(np.abs(mdp.expected_reward).max())
    if mdp.gamma < 1.0 and not np.isfinite(r_max / (1.0 - mdp.gamma) * 2.0):
        raise InvalidMDPError(
            f"rewards up to |R| = {r_max:.3g} with gamma = {mdp.gamma:g} give values up to "
            f"|R|/(1 - gamma) = {r_max / (1.0 - mdp.gamma):.3g}, beyond float64: rescale R")


def _check_finite(V, k: int, method: str) -> None:
    """DivergenceError naming the sweep when the values overflowed to inf/NaN."""
    if not np.isfinite(V).all():
        s = int(np.flatnonzero(~np.isfinite(V))[0])
        raise DivergenceError(f"{method}: V[{s}] = {V[s]} at sweep {k}: the values overflow "
                              "float64 (undiscounted returns too large); rescale R")


def _greedy(mdp, Q, tol: float) -> np.ndarray:
    """π(s) = argmax_a Q(s, a); at γ = 1 among the actions tied within ``tol``, one that
    terminates (a greedy choice over ties can loop forever: line world's 'left' at s1)."""
    if mdp.gamma < 1.0:
        return greedy_policy(Q)
    tie = tol + 1e-12 * (1.0 + float(np.abs(Q).max()))
    for widen in (1.0, 1e3, 1e6):
        try:
            return proper_policy(mdp, allowed=Q >= Q.max(axis=1, keepdims=True) - widen * tie)
        except InvalidMDPError:
            continue
    return proper_policy(mdp)


def value_iteration(mdp, tol: float = 1e-8, max_iter: int = 100_000, V0=None,
                    bounds: bool = True, progress=None) -> PlanningResult:
    """Value iteration: repeat the Bellman optimality backup (lecture §4)

        V_{k+1}(s) = max_a Σ_s' P(s'|s,a) [R(s,a,s') + γ V_k(s')]

    Stopping rule (γ < 1), with d = V_{k+1} − V_k and c = γ/(1−γ):
      bounds=True (default, MacQueen/Porteus bounds, Puterman §6.6.3):
        V_{k+1} + c·min(d) ≤ V* ≤ V_{k+1} + c·max(d). Stop when c·(max d − min d)/2 ≤ tol and
        return the midpoint V = V_{k+1} + c·(max d + min d)/2, so ‖V − V*‖∞ ≤ tol. The span of d
        usually shrinks much faster than ‖d‖∞, so this needs far fewer sweeps.
      bounds=False: stop when c·‖d‖∞ ≤ tol and return V_{k+1}; then ‖V_{k+1} − V*‖∞ ≤ tol.
    With γ = 1 (episodic MDPs where every policy terminates) stop when ‖d‖∞ ≤ tol; no a-priori
    bound holds. γ = 1 raises InvalidMDPError when some state cannot reach a terminal state. ``residual`` is the final bound (or ‖d‖∞ when γ = 1).
    """
    _check_tol(tol, max_iter)
    S = mdp.n_states
    g = mdp.gamma
    c = g / (1.0 - g) if g < 1.0 else None
    if g == 1.0:
        proper_policy(mdp)  # raises, naming a state that can never terminate
    _check_value_range(mdp)
    V = np.zeros(S) if V0 is None else np.array(V0, dtype=np.float64)
    live = ~mdp.terminal
    sweep = _make_sweep(mdp)
    history = []
    converged = False
    k = 0
    for k in range(1, int(max_iter) + 1):
        V_new, lo, hi = sweep(V)  # V_new = T* V; lo, hi = min, max of V_new − V
        if not np.isfinite(hi - lo):
            _check_finite(V_new, k, "value_iteration")
        if c is None:
            res = max(abs(lo), abs(hi))
        elif bounds:
            res = c * (hi - lo) / 2.0
        else:
            res = c * max(abs(lo), abs(hi))
        history.append(res)
        V = V_new
        if progress is not None:
            progress(k, res)
        if res <= tol:
            converged = True
            if c is not None and bounds:
                V = V + c * (hi + lo) / 2.0
                V[~live] = 0.0
            break
    Q = q_from_v(mdp, V)
    return PlanningResult(V, Q, _greedy(mdp, Q, tol), k, history[-1], np.asarray(history),
                          "value_iteration", converged)


def _make_sweep(mdp):
    """Return sweep(V) -> (T* V, min d, max d) with d = T* V − V."""
    S, A, g = mdp.n_states, mdp.n_actions, mdp.gamma
    R = mdp.expected_reward  # (S, A)
    PT = mdp.transition_matrix()  # (S·A, S), CSR when sparse
    live = ~mdp.terminal

    R_flat = np.ascontiguousarray(R).reshape(-1)  # (S·A,)
    if mdp.is_sparse:  # one compiled pass over the nonzeros, no (S·A,) temporaries
        from policylab.planning.kernels import csr_optimality_sweep

        P = sp.csr_array(PT)
        indptr, indices, data = P.indptr, P.indices, P.data
        live_c = np.ascontiguousarray(live)

        def sweep_csr(V):
            V_new = np.empty(S)
            lo, hi = csr_optimality_sweep(indptr, indices, data, R_flat, g, live_c, V, V_new)
            return V_new, lo, hi

        return sweep_csr

    def sweep(V):
        Q = PT @ V  # (S·A,) = Σ_s' P(s'|s,a) V(s'), then in place: R + γ·PV
        Q *= g
        Q += R_flat
        Q = Q.reshape(S, A)
        V_new = Q[:, 0].copy()  # max over actions column by column: ~6× faster than .max(axis=1)
        for a in range(1, A):
            np.maximum(V_new, Q[:, a], out=V_new)
        V_new[~live] = 0.0
        d = V_new - V
        return V_new, float(d.min()), float(d.max())

    return sweep


def policy_iteration(mdp, max_iter: int = 10_000, policy0=None,
                     evaluation: str = "exact", tol: float = 1e-10) -> PlanningResult:
    """Policy iteration (Howard 1960): alternate exact evaluation and greedy improvement.

        evaluate:  V^{π_k} = (I − γ P_{π_k})⁻¹ r_{π_k}
        improve:   π_{k+1}(s) = argmax_a Σ_s' P(s'|s,a) [R(s,a,s') + γ V^{π_k}(s')]

    Keeps the current action unless another is better by more than 1e-12·(1+|V|), so it
    cannot cycle among ties. Stops when the policy is stable: then π_k is optimal and
    V^{π_k} = V* up to the linear solve's round-off (finitely many steps, at most A^S).
    ``residual`` is ‖T* V − V‖∞ at the end; history holds the number of changed actions.
    """
    _check_tol(tol, max_iter)
    _check_value_range(mdp)
    S = mdp.n_states
    if policy0 is not None:
        pi = np.asarray(policy0, dtype=np.int64).copy()
    elif mdp.gamma == 1.0:
        pi = proper_policy(mdp)  # PI with γ = 1 must start from a policy that terminates
    else:
        pi = np.zeros(S, dtype=np.int64)
    history = []
    for k in range(1, int(max_iter) + 1):
        V = evaluate_policy(mdp, pi, method=evaluation, tol=tol)
        Q = q_from_v(mdp, V)
        best = Q.max(axis=1)
        current = Q[np.arange(S), pi]
        improve = best > current + 1e-12 * (1.0 + np.abs(best))
        history.append(int(improve.sum()))
        if not improve.any():
            res = float(np.max(np.abs(best - V)))
            return PlanningResult(V, Q, pi, k, res, np.asarray(history, dtype=float),
                                  "policy_iteration", True)
        pi = np.where(improve, Q.argmax(axis=1), pi)
    res = float(np.max(np.abs(best - V)))
    return PlanningResult(V, Q, pi, k, res, np.asarray(history, dtype=float), "policy_iteration", False)


def proper_policy(mdp, allowed=None) -> np.ndarray:
    """A policy that reaches a terminal state from every state with probability 1.

    Backward breadth-first search from the terminal states: each state takes an action with
    positive probability of moving one layer closer, so from every state a terminal state is
    reached within S steps with positive probability. ``allowed`` (S, A) bool restricts the
    choice (e.g. to the actions tied for the maximum of Q*). Raises InvalidMDPError naming a
    state from which no (allowed) action sequence reaches a terminal state.
    """
    S, A = mdp.n_states, mdp.n_actions
    PT = sp.csr_array(mdp.transition_matrix())
    pi = np.zeros(S, dtype=np.int64)
    reached = mdp.terminal.copy()
    if not reached.any():
        raise InvalidMDPError("gamma = 1 needs terminal states: this MDP has none")
    while not reached.all():
        hits = (PT @ reached.astype(np.float64)).reshape(S, A) > 0  # (S, A)
        if allowed is not None:
            hits &= allowed
        new = hits.any(axis=1) & ~reached
        if not new.any():
            s = int(np.flatnonzero(~reached)[0])
            raise InvalidMDPError(
                f"gamma = 1 but no policy reaches a terminal state from state "
                f"{mdp.state_names[s]!r} (index {s}): its undiscounted return diverges"
            )
        pi[new] = hits[new].argmax(axis=1)
        reached |= new
    return pi


def modified_policy_iteration(mdp, m: int = 20, tol: float = 1e-8,
                              max_iter: int = 100_000) -> PlanningResult:
    """Modified policy iteration (Puterman & Shin 1978): improve greedily, then evaluate
    partially with m applications of the expectation backup T^π:

        π_{k+1} = greedy(V_k),   V_{k+1} = (T^{π_{k+1}})^m T* V_k ...

    m = 0 is value iteration; m → ∞ is policy iteration. Stops with the same rule as
    value_iteration(bounds=False): γ/(1−γ)·‖T* V_k − V_k‖∞ ≤ tol ⇒ ‖T* V_k − V*‖∞ ≤ tol.
    """
    _check_tol(tol, max_iter)
    if int(m) < 0:
        raise InputError(f"m must be >= 0, got {m}")
    g = mdp.gamma
    c = g / (1.0 - g) if g < 1.0 else 1.0
    if g == 1.0:
        proper_policy(mdp)  # raises, naming a state that can never terminate
    _check_value_range(mdp)
    V = np.zeros(mdp.n_states)
    live = ~mdp.terminal
    history = []
    for k in range(1, int(max_iter) + 1):
        Q = q_from_v(mdp, V)
        pi = Q.argmax(axis=1)
        TV = Q.max(axis=1)
        TV[~live] = 0.0
        _check_finite(TV, k, "modified_policy_iteration")
        res = c * float(np.max(np.abs(TV - V)))
        history.append(res)
        V = TV
        if res <= tol:
            Q = q_from_v(mdp, V)
            return PlanningResult(V, Q, _greedy(mdp, Q, tol), k, res, np.asarray(history),
                                  "modified_policy_iteration", True)
        r_pi, P_pi = policy_model(mdp, pi)
        for _ in range(int(m)):
            V = r_pi + g * (P_pi @ V)
            V[~live] = 0.0
    Q = q_from_v(mdp, V)
    return PlanningResult(V, Q, _greedy(mdp, Q, tol), k, history[-1], np.asarray(history),
                          "modified_policy_iteration", False)
