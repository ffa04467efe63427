"""Bellman operators (lecture §4), one pure function per equation.

Shapes: V (S,), Q (S, A), π as (S,) action indices or (S, A) probabilities.
``mdp.expected_reward`` is R(s, a) = Σ_s' P(s'|s,a) R(s,a,s'), so
Σ_s' P(s'|s,a)[R(s,a,s') + γ V(s')] = R(s,a) + γ Σ_s' P(s'|s,a) V(s').
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from policylab.errors import InputError


def _check_v(mdp, V) -> np.ndarray:
    V = np.asarray(V, dtype=np.float64)
    if V.shape != (mdp.n_states,):
        raise InputError(f"V must have shape ({mdp.n_states},), got {V.shape}")
    return V


def policy_matrix(mdp, policy) -> np.ndarray:
    """π as an (S, A) probability matrix, from (S,) action indices or (S, A) probabilities."""
    S, A = mdp.n_states, mdp.n_actions
    pi = np.asarray(policy)
    if pi.ndim == 1:
        if pi.shape != (S,):
            raise InputError(f"policy of action indices must have shape ({S},), got {pi.shape}")
        if not np.issubdtype(pi.dtype, np.integer):
            if not np.all(np.isfinite(pi)) or not np.all(pi == np.round(pi)):
                raise InputError("policy of shape (S,) must hold integer action indices")
            pi = pi.astype(np.int64)
        if ((pi < 0) | (pi >= A)).any():
            s = int(np.flatnonzero((pi < 0) | (pi >= A))[0])
            raise InputError(f"policy[{s}] = {pi[s]} is not an action index in [0, {A})")
        out = np.zeros((S, A))
        out[np.arange(S), pi] = 1.0
        return out
    if pi.shape != (S, A):
        raise InputError(f"policy must have shape ({S},) or ({S}, {A}), got {pi.shape}")
    pi = pi.astype(np.float64)
    bad = ~np.isfinite(pi) | (pi < 0)
    if bad.any():
        s, a = map(int, np.argwhere(bad)[0])
        raise InputError(f"policy[{s}, {a}] = {pi[s, a]} is not a probability")
    sums = pi.sum(axis=1)
    if (np.abs(sums - 1.0) > 1e-8).any():
        s = int(np.flatnonzero(np.abs(sums - 1.0) > 1e-8)[0])
        raise InputError(f"policy row {s} sums to {sums[s]:.6g}, not 1")
    return pi


def q_from_v(mdp, V) -> np.ndarray:
    """One-step lookahead (Bellman equation for Q given V):

        Q(s, a) = Σ_s' P(s'|s,a) [R(s,a,s') + γ V(s')]

    Returns (S, A).
    """
    V = _check_v(mdp, V)
    PV = mdp.transition_matrix() @ V  # (S·A,)
    return mdp.expected_reward + mdp.gamma * PV.reshape(mdp.n_states, mdp.n_actions)


def bellman_expectation_backup(mdp, V, policy) -> np.ndarray:
    """Bellman expectation operator T^π (lecture §4):

        (T^π V)(s) = Σ_a π(a|s) Σ_s' P(s'|s,a) [R(s,a,s') + γ V(s')]

    Returns (S,).
    """
    pi = policy_matrix(mdp, policy)
    return np.einsum("sa,sa->s", pi, q_from_v(mdp, V))


def bellman_optimality_backup(mdp, V) -> np.ndarray:
    """Bellman optimality operator T* (lecture §4):

        (T* V)(s) = max_a Σ_s' P(s'|s,a) [R(s,a,s') + γ V(s')]

    Returns (S,).
    """
    return q_from_v(mdp, V).max(axis=1)


def bellman_optimality_backup_q(mdp, Q) -> np.ndarray:
    """Bellman optimality operator on action values:

        (T* Q)(s, a) = Σ_s' P(s'|s,a) [R(s,a,s') + γ max_a' Q(s', a')]

    Returns (S, A).
    """
    Q = np.asarray(Q, dtype=np.float64)
    if Q.shape != (mdp.n_states, mdp.n_actions):
        raise InputError(f"Q must have shape ({mdp.n_states}, {mdp.n_actions}), got {Q.shape}")
    return q_from_v(mdp, Q.max(axis=1))


def greedy_policy(Q, tie_tol: float = 0.0) -> np.ndarray:
    """π(s) = argmax_a Q(s, a) (lecture §4), ties broken toward the lowest action index.

    With ``tie_tol`` > 0, actions within tie_tol of the maximum count as tied. Returns (S,) ints.
    """
    Q = np.asarray(Q, dtype=np.float64)
    if Q.ndim != 2:
        raise InputError(f"Q must have shape (S, A), got {Q.shape}")
    if tie_tol <= 0:
        return Q.argmax(axis=1)
    return (Q >= Q.max(axis=1, keepdims=True) - tie_tol).argmax(axis=1)


def policy_model(mdp, policy):
    """Reward vector and transition matrix of the Markov chain induced by π:

        r_π(s) = Σ_a π(a|s) R(s, a),    P_π(s, s') = Σ_a π(a|s) P(s'|s, a)

    Returns (r_π (S,), P_π (S, S) dense or CSR).
    """
    pi = policy_matrix(mdp, policy)
    S, A = mdp.n_states, mdp.n_actions
    r_pi = np.einsum("sa,sa->s", pi, mdp.expected_reward)
    if mdp.is_sparse:
        # Row s of P_π mixes rows s·A + a of P with weights π(a|s).
        W = sp.csr_array((pi.reshape(-1), np.arange(S * A), np.arange(0, S * A + 1, A)),
                         shape=(S, S * A))
        return r_pi, sp.csr_array(W @ mdp.P)
    return r_pi, np.einsum("sa,sat->st", pi, mdp.P)
