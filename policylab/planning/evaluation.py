"""Policy evaluation: V^π from the Bellman expectation equation, exactly or iteratively."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from policylab.errors import InputError, InvalidMDPError
from policylab.planning.bellman import bellman_expectation_backup, policy_matrix, policy_model

#: Above this many states the exact solve uses a sparse LU factorization instead of a dense one.
DENSE_SOLVE_MAX_STATES = 3000


def evaluate_policy(mdp, policy, method: str = "exact", tol: float = 1e-10,
                    max_iter: int = 1_000_000, V0=None) -> np.ndarray:
    """V^π, the fixed point of the Bellman expectation equation (lecture §4):

        V^π(s) = Σ_a π(a|s) Σ_s' P(s'|s,a) [R(s,a,s') + γ V^π(s')]
        ⇔  (I − γ P_π) V^π = r_π

    method="exact": solve the linear system on the non-terminal states (V = 0 on terminal
    states): dense LU up to DENSE_SOLVE_MAX_STATES states, else restarted GMRES to a relative
    residual of 1e-13 (direct sparse LU as fallback). method="iterative": V_{k+1} = T^π V_k until γ/(1−γ)·‖V_{k+1} − V_k‖∞ ≤ tol, which
    bounds ‖V_{k+1} − V^π‖∞ ≤ tol (for γ = 1: until ‖V_{k+1} − V_k‖∞ ≤ tol, no bound).

    With γ = 1 the system is nonsingular only if every state reaches a terminal state under π;
    otherwise InvalidMDPError names a state that never does.
    Returns V^π of shape (S,).
    """
    if method not in ("exact", "iterative"):
        raise InputError(f"method must be 'exact' or 'iterative', got {method!r}")
    pi = policy_matrix(mdp, policy)
    if not (tol > 0):
        raise InputError(f"tol must be positive, got {tol}")
    r_pi, P_pi = policy_model(mdp, pi)
    if mdp.gamma == 1.0:
        _check_proper(mdp, P_pi)
    if method == "exact":
        return _solve_exact(mdp, r_pi, P_pi)
    V = np.zeros(mdp.n_states) if V0 is None else np.array(V0, dtype=np.float64)
    g = mdp.gamma
    scale = g / (1.0 - g) if g < 1.0 else 1.0
    for _ in range(int(max_iter)):
        V_new = r_pi + g * (P_pi @ V)
        V_new[mdp.terminal] = 0.0
        delta = np.max(np.abs(V_new - V))
        V = V_new
        if scale * delta <= tol:
            return V
    raise RuntimeError(f"iterative policy evaluation did not reach tol={tol} in {max_iter} sweeps")


def _solve_exact(mdp, r_pi, P_pi) -> np.ndarray:
    live = ~mdp.terminal
    idx = np.flatnonzero(live)
    V = np.zeros(mdp.n_states)
    if idx.size == 0:
        return V
    g = mdp.gamma
    if sp.issparse(P_pi) or idx.size > DENSE_SOLVE_MAX_STATES:
        # Large sparse systems: a direct LU fills in badly on random graphs, so use a Krylov
        # solver to round-off tolerance (the Neumann series of γP_π converges, and so does
        # GMRES; the residual is checked below).
        M = sp.csr_array(P_pi)[idx][:, idx]
        A = sp.identity(idx.size, format="csr") - g * M
        b = r_pi[idx]
        x, info = spla.gmres(A, b, rtol=1e-13, atol=0.0, restart=50, maxiter=2000)
        resid = np.max(np.abs(A @ x - b)) if info == 0 else np.inf
        if not np.isfinite(resid) or resid > 1e-9 * max(1.0, np.max(np.abs(b))):
            x = spla.spsolve(sp.csc_array(A), b)  # fall back to a direct solve
        V[idx] = x
    else:
        A = np.eye(idx.size) - g * P_pi[np.ix_(idx, idx)]
        try:
            V[idx] = np.linalg.solve(A, r_pi[idx])
        except np.linalg.LinAlgError:
            raise InvalidMDPError("(I − γ P_π) is singular: V^π is not defined for this policy") from None
    if not np.all(np.isfinite(V)):
        raise InvalidMDPError("(I − γ P_π) is singular: V^π is not defined for this policy")
    return V


def _check_proper(mdp, P_pi) -> None:
    """With γ = 1, V^π is finite iff every state reaches a terminal state under π."""
    S = mdp.n_states
    reach = mdp.terminal.copy()
    if not reach.any():
        raise InvalidMDPError(
            "gamma = 1 and the MDP has no terminal state: the undiscounted return is unbounded, "
            "so (I − P_π) is singular; use gamma < 1 or mark terminal states"
        )
    # Backward reachability: states with an edge into the reaching set.
    M = sp.csr_array(P_pi) if not sp.issparse(P_pi) else P_pi
    M = sp.csc_array(M)
    while True:
        into = np.asarray((M @ reach.astype(np.float64)) > 0).reshape(-1)
        new = reach | into
        if new.sum() == reach.sum():
            break
        reach = new
    if not reach.all():
        s = int(np.flatnonzero(~reach)[0])
        raise InvalidMDPError(
            f"gamma = 1 but state {mdp.state_names[s]!r} (index {s}) never reaches a terminal state "
            "under this policy: its undiscounted return diverges and (I − P_π) is singular; "
            f"use gamma < 1 or a policy that terminates (checked over {S} states)"
        )


__all__ = ["bellman_expectation_backup", "evaluate_policy"]
