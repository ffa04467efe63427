"""The MDP tuple (S, A, P, R, γ) as arrays, with validation before any work.

``P[s, a, s'] = Pr(s_{t+1}=s' | s_t=s, a_t=a)`` and ``R[s, a, s'] = E[r_{t+1} | s, a, s']``
(lecture §2). Large MDPs keep P as a scipy CSR matrix of shape (S·A, S) whose row
``s·A + a`` is the distribution P(·|s, a).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from policylab.errors import InvalidMDPError

#: Rows of P must sum to 1 within this absolute tolerance.
ROW_SUM_TOL = 1e-8
#: Keep a dense P as CSR when at most this fraction of its entries is nonzero. Measured (one
#: core, S=1500, A=4, `P @ V`): CSR/dense time 0.19 at density 0.1, 0.40 at 0.2, 0.75 at
#: 0.3, 1.15 at 0.4 (and CSR needs 12 bytes per nonzero against 8 per dense entry).
CSR_MAX_DENSITY = 0.25
#: Smaller dense arrays stay dense (a sweep is then well under a millisecond either way, and
#: small examples keep indexing P[s, a, s']).
CSR_MIN_ENTRIES = 1 << 20


class IndexNames(Sequence):
    """The default names "0", "1", …, "n−1", made on demand: no n strings built up front
    (a million-state MDP would spend ~0.1 s and ~60 MB on them). Compares equal to a list
    of the same strings; ``list(names)`` materializes them (e.g. for JSON)."""

    def __init__(self, n: int):
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [str(k) for k in range(*i.indices(self.n))]
        k = operator.index(i)
        if not -self.n <= k < self.n:
            raise IndexError(f"state index {i} out of range for {self.n} states")
        return str(k % self.n)

    def __eq__(self, other) -> bool:
        if isinstance(other, IndexNames):
            return other.n == self.n
        return isinstance(other, Sequence) and len(other) == self.n and \
            all(str(k) == x for k, x in enumerate(other))

    def __repr__(self) -> str:
        return f"IndexNames({self.n})"


def _fmt(x) -> str:
    return f"{float(x):.6g}"


def _as_csr_rows(P, n_actions: int | None):
    """Normalize a sparse P to a CSR array of shape (S·A, S). Accepts (S·A, S) sparse or a
    sequence of A sparse (S, S) matrices (pymdptoolbox's layout, P[a][s, s'])."""
    if isinstance(P, Sequence) and not isinstance(P, np.ndarray):
        mats = [sp.csr_array(m, dtype=np.float64) for m in P]
        A, S = len(mats), mats[0].shape[0]
        for a, m in enumerate(mats):
            if m.shape != (S, S):
                raise InvalidMDPError(f"P[{a}] has shape {m.shape}, expected ({S}, {S})")
        # Interleave so that row s·A + a holds P(·|s, a).
        stacked = sp.vstack(mats, format="csr")  # rows a·S + s
        order = (np.arange(S)[:, None] + S * np.arange(A)[None, :]).reshape(-1)
        return sp.csr_array(stacked[order]), A
    P = sp.csr_array(P, dtype=np.float64)
    if n_actions is None:
        raise InvalidMDPError(
            "a sparse P of shape (S*A, S) needs R of shape (S, A) so the number of actions is known"
        )
    if P.shape[0] != P.shape[1] * n_actions:
        raise InvalidMDPError(
            f"sparse P has shape {P.shape}; expected (S*A, S) = ({P.shape[1] * n_actions}, {P.shape[1]})"
        )
    return P, n_actions


def _dense_layout(P: np.ndarray, R, layout: str | None):
    """(P as (S, A, S), R with a 3-d R transposed alike) from P given as (S, A, S) or
    pymdptoolbox's (A, S, S); ``layout`` must be given when the shape fits both (A == S)."""
    if layout not in (None, "SAS", "ASS"):
        raise InvalidMDPError(f"layout must be 'SAS' (P[s, a, s']) or 'ASS' (P[a, s, s'], "
                              f"pymdptoolbox), got {layout!r}")
    if P.ndim != 3:
        raise InvalidMDPError(f"P must have shape (S, A, S), got {P.shape}")
    sas, ass = P.shape[0] == P.shape[2], P.shape[1] == P.shape[2]
    if layout is None:
        if not (sas or ass):
            raise InvalidMDPError(f"P must have shape (S, A, S), got {P.shape} "
                                  "(pymdptoolbox's (A, S, S) is read too)")
        if sas and ass and P.shape[0] > 1:
            raise InvalidMDPError(
                f"P has shape {P.shape}: with A == S it reads as (S, A, S) or as pymdptoolbox's "
                "(A, S, S); pass layout='SAS' (P[s, a, s']) or layout='ASS' (P[a, s, s'])")
        layout = "SAS" if sas else "ASS"
    if layout == "SAS":
        if not sas:
            raise InvalidMDPError(f"P must have shape (S, A, S), got {P.shape} (layout='SAS')")
        return P, R
    if not ass:
        raise InvalidMDPError(f"layout='ASS' needs P of shape (A, S, S), got {P.shape}")
    if R is not None and R.ndim == 3:
        R = R.transpose(1, 0, 2)
    return P.transpose(1, 0, 2), R  # views: the dense scan reads them in place


@dataclass(eq=False)
class TabularMDP:
    """A finite MDP (S, A, P, R, γ) with optional start distribution and terminal states.

    Args:
        P: (S, A, S) transition probabilities, dense; or sparse as a (S·A, S) scipy matrix
            (row s·A + a) or a list of A sparse (S, S) matrices.
        R: rewards, (S, A, S) = R(s, a, s') or (S, A) = expected reward of (s, a).
        gamma: discount factor γ ∈ [0, 1].
        initial: (S,) start distribution; default uniform over non-terminal states.
        terminal: (S,) bool mask or list of state indices. Terminal states must be absorbing
            (P(s|s, a) = 1 for every a) with zero reward; an episode ends on entering one.
        state_names, action_names: labels for printing and figures.
        layout: how a dense 3-d P (and R) is indexed: "SAS" = P[s, a, s'] or "ASS" =
            P[a, s, s'] (pymdptoolbox's layout). None infers it from the shape; when A == S
            both readings fit the shape, so it must be given.

    Raises:
        InvalidMDPError: before any work, naming the offending state/action and value.
    """

    P: np.ndarray | sp.csr_array
    R: np.ndarray
    gamma: float
    initial: np.ndarray | None = None
    terminal: np.ndarray | None = None
    state_names: list[str] | None = None
    action_names: list[str] | None = None
    layout: str | None = None
    expected_reward: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._validate_and_normalize()

    # ------------------------------------------------------------------ validation
    def _validate_and_normalize(self) -> None:
        R = self.R
        if sp.issparse(R):
            R_arr = None
        else:
            R_arr = np.asarray(R, dtype=np.float64)
            if R_arr.ndim not in (2, 3):
                raise InvalidMDPError(f"R must have shape (S, A) or (S, A, S), got {R_arr.shape}")
        if sp.issparse(self.P) or (
            isinstance(self.P, Sequence) and not isinstance(self.P, np.ndarray) and len(self.P)
            and sp.issparse(self.P[0])
        ):
            n_actions = None if R_arr is None else R_arr.shape[1]
            P, A = _as_csr_rows(self.P, n_actions)
            S = P.shape[1]
            self.is_sparse = True
        else:
            P, R_arr = _dense_layout(np.asarray(self.P, dtype=np.float64), R_arr, self.layout)
            S, A = P.shape[0], P.shape[1]
            self.is_sparse = False
        if S == 0 or A == 0:
            raise InvalidMDPError(f"an MDP needs at least one state and one action, got S={S}, A={A}")
        self.n_states, self.n_actions = S, A
        self.layout = "SAS"  # P is now P[s, a, s'] (or CSR rows s·A + a)

        # gamma
        try:
            g = float(self.gamma)
        except (TypeError, ValueError):
            raise InvalidMDPError(f"gamma must be a number in [0, 1], got {self.gamma!r}") from None
        if not (0.0 <= g <= 1.0):  # also rejects NaN
            raise InvalidMDPError(f"gamma must be in [0, 1], got {self.gamma!r}")
        self.gamma = g

        # probabilities
        row_sums = None
        if not self.is_sparse and P.size >= CSR_MIN_ENTRIES:
            P, row_sums, R_arr = self._dense_to_csr(P, R_arr)  # CSR when sparse enough
        elif not self.is_sparse:
            P = np.ascontiguousarray(P)
        data = P.data if self.is_sparse else P
        if row_sums is not None:
            pass  # checked by the one-pass scan
        elif np.isnan(data).any():
            idx = self._locate(P, np.isnan)
            raise InvalidMDPError(f"P has NaN probability at {idx}")
        elif (data < 0).any():
            idx = self._locate(P, lambda x: x < 0)
            raise InvalidMDPError(f"P has negative probability at {idx}")
        if row_sums is None:
            row_sums = (np.asarray(P.sum(axis=1)).reshape(S, A) if self.is_sparse else P.sum(axis=2))
        bad = np.abs(row_sums - 1.0) > ROW_SUM_TOL
        if bad.any():
            s, a = map(int, np.argwhere(bad)[0])
            raise InvalidMDPError(
                f"P(.|s={self._sname(s)}, a={self._aname(a)}) sums to {_fmt(row_sums[s, a])}, "
                f"not 1 (tolerance {ROW_SUM_TOL:g})"
            )
        self.P = P

        # rewards -> expected_reward (S, A) and per-transition rewards
        if R_arr is None:  # sparse (S*A, S) reward matrix aligned with P
            Rs = sp.csr_array(self.R, dtype=np.float64)
            if Rs.shape != (S * A, S):
                raise InvalidMDPError(f"sparse R must have shape (S*A, S) = {(S * A, S)}, got {Rs.shape}")
            if not np.isfinite(Rs.data).all():
                raise InvalidMDPError("R has a NaN or infinite reward")
            self.R = Rs
            exp_r = np.asarray((Rs.multiply(P)).sum(axis=1)).reshape(S, A)
        else:
            if R_arr.shape not in ((S, A), (S, A, S)):
                raise InvalidMDPError(
                    f"R has shape {R_arr.shape}; expected (S, A) = {(S, A)} or (S, A, S) = {(S, A, S)}"
                )
            if not np.isfinite(R_arr).all():
                s, a = map(int, np.argwhere(~np.isfinite(R_arr))[0][:2])
                v = R_arr[s, a][~np.isfinite(R_arr[s, a])].flat[0] if R_arr.ndim == 3 else R_arr[s, a]
                raise InvalidMDPError(
                    f"R(s={self._sname(s)}, a={self._aname(a)}) is {v}: rewards must be finite"
                )
            self.R = R_arr
            if R_arr.ndim == 2:
                exp_r = R_arr.copy()
            elif self.is_sparse:
                exp_r = np.asarray(P.multiply(R_arr.reshape(S * A, S)).sum(axis=1)).reshape(S, A)
            else:
                exp_r = np.einsum("sat,sat->sa", P, R_arr)
        self.expected_reward = exp_r

        # terminal states
        term = np.zeros(S, dtype=bool)
        if self.terminal is not None:
            t = np.asarray(self.terminal)
            if t.dtype == bool:
                if t.shape != (S,):
                    raise InvalidMDPError(f"terminal mask must have shape ({S},), got {t.shape}")
                term = t.copy()
            else:
                t = t.astype(np.int64).reshape(-1)
                if ((t < 0) | (t >= S)).any():
                    raise InvalidMDPError(f"terminal state index out of range [0, {S}): {t.tolist()}")
                term[t] = True
        for s in np.flatnonzero(term):
            for a in range(A):
                p_stay = float(P[s * A + a, s]) if self.is_sparse else P[s, a, s]
                if abs(p_stay - 1.0) > ROW_SUM_TOL:
                    raise InvalidMDPError(
                        f"terminal state {self._sname(s)} is not absorbing: "
                        f"P({self._sname(s)}|{self._sname(s)}, a={self._aname(a)}) = {_fmt(p_stay)}"
                    )
                if exp_r[s, a] != 0.0:
                    raise InvalidMDPError(
                        f"terminal state {self._sname(s)} has nonzero reward {_fmt(exp_r[s, a])} "
                        f"for a={self._aname(a)}"
                    )
        self.terminal = term

        # start distribution
        if self.initial is None:
            nonterm = ~term if (~term).any() else np.ones(S, dtype=bool)
            init = nonterm / nonterm.sum()
        else:
            init = np.asarray(self.initial, dtype=np.float64)
            if init.shape != (S,):
                raise InvalidMDPError(f"initial must have shape ({S},), got {init.shape}")
            if not np.isfinite(init).all() or (init < 0).any():
                s = int(np.flatnonzero(~np.isfinite(init) | (init < 0))[0])
                raise InvalidMDPError(f"initial[{self._sname(s)}] = {init[s]} is not a probability")
            if abs(init.sum() - 1.0) > ROW_SUM_TOL:
                raise InvalidMDPError(f"initial sums to {_fmt(init.sum())}, not 1")
        self.initial = init

        # names
        if self.state_names is None or isinstance(self.state_names, IndexNames):
            self.state_names = IndexNames(S)
        elif len(self.state_names) != S:
            raise InvalidMDPError(f"state_names has {len(self.state_names)} names for {S} states")
        if self.action_names is None:
            self.action_names = [str(a) for a in range(A)]
        elif len(self.action_names) != A:
            raise InvalidMDPError(f"action_names has {len(self.action_names)} names for {A} actions")
        if not isinstance(self.state_names, IndexNames):
            self.state_names = [str(n) for n in self.state_names]
        self.action_names = [str(n) for n in self.action_names]
        self._csr = None

    def _dense_to_csr(self, P, R_arr):
        """One pass over a large dense P (any strides): check it, and store it as CSR (S·A, S)
        when at most CSR_MAX_DENSITY of it is nonzero (a 3-d R then becomes CSR aligned with
        P); else keep it dense. Returns (P, row sums (S, A), R)."""
        S, A = P.shape[0], P.shape[1]
        from policylab.mdp.kernels import scan_dense

        R3 = R_arr if R_arr is not None and R_arr.ndim == 3 else np.zeros((0, 0, 0))
        max_nnz = int(CSR_MAX_DENSITY * P.size)
        ok, row, col, sums, nnz, indptr, indices, data, rew = scan_dense(P, R3, max_nnz)
        if not ok:
            s, a, v = row // A, row % A, P[row // A, row % A, col]
            what = "NaN" if np.isnan(v) else "negative"
            raise InvalidMDPError(f"P has {what} probability at s={self._sname(s)}, "
                                  f"a={self._aname(a)}, s'={self._sname(col)}: {v}")
        if nnz > max_nnz:
            return np.ascontiguousarray(P), sums.reshape(S, A), R_arr
        shape = (S * A, S)
        self.is_sparse = True
        csr = sp.csr_array((data[:nnz], indices[:nnz], indptr), shape=shape)
        if R3.shape[0]:
            if not np.isfinite(R3).all():
                return csr, sums.reshape(S, A), R_arr  # the reward check below names it
            R_arr = None
            self.R = sp.csr_array((rew[:nnz], indices[:nnz], indptr), shape=shape)
        return csr, sums.reshape(S, A), R_arr

    def _sname(self, s: int) -> str:
        names = self.state_names
        return f"{s} ({names[s]!r})" if names is not None and len(names) > s and names[s] != str(s) else str(s)

    def _aname(self, a: int) -> str:
        names = self.action_names
        return f"{a} ({names[a]!r})" if names is not None and len(names) > a and names[a] != str(a) else str(a)

    def _locate(self, P, pred) -> str:
        if self.is_sparse:
            coo = P.tocoo()
            k = int(np.flatnonzero(pred(coo.data))[0])
            row, s2 = int(coo.row[k]), int(coo.col[k])
            s, a, v = row // self.n_actions, row % self.n_actions, coo.data[k]
        else:
            s, a, s2 = map(int, np.argwhere(pred(P))[0])
            v = P[s, a, s2]
        return f"s={self._sname(s)}, a={self._aname(a)}, s'={self._sname(s2)}: {v}"

    # ------------------------------------------------------------------ views
    def transition_matrix(self):
        """P as a 2-d (S·A, S) matrix (CSR if sparse, else a dense reshape view)."""
        if self.is_sparse:
            return self.P
        return self.P.reshape(self.n_states * self.n_actions, self.n_states)

    def transitions(self):
        """CSR view for samplers and compiled kernels.

        Returns (indptr (S·A+1,), next_state (nnz,), prob (nnz,), reward (nnz,)): row s·A + a
        lists the successors s' with P(s'|s,a) > 0 and the reward R(s,a,s') of that transition.
        """
        if self._csr is None:
            S, A = self.n_states, self.n_actions
            M = sp.csr_array(self.transition_matrix())
            M.eliminate_zeros()
            M.sort_indices()
            indptr = M.indptr.astype(np.int64)
            nxt = M.indices.astype(np.int64)
            rows = np.repeat(np.arange(S * A), np.diff(indptr))
            if sp.issparse(self.R) and self.R.nnz == M.nnz \
                    and np.array_equal(self.R.indptr, M.indptr) \
                    and np.array_equal(self.R.indices, M.indices):  # aligned with P (dense scan)
                rew = self.R.data
            elif sp.issparse(self.R):
                rew = np.asarray(self.R[rows, nxt]).reshape(-1)
            elif self.R.ndim == 3:
                rew = self.R.reshape(S * A, S)[rows, nxt]
            else:
                rew = self.R.reshape(S * A)[rows]
            self._csr = (indptr, nxt, M.data.astype(np.float64), rew.astype(np.float64))
        return self._csr

    def to_env(self, seed: int | None = None, max_episode_steps: int | None = None):
        """A gymnasium.Env that samples this MDP (Discrete observations and actions)."""
        from policylab.mdp.gym_bridge import MDPEnv

        return MDPEnv(self, seed=seed, max_episode_steps=max_episode_steps)

    def with_gamma(self, gamma: float) -> TabularMDP:
        """The same MDP with another discount factor."""
        return TabularMDP(self.P, self.R, gamma, initial=self.initial, terminal=self.terminal,
                          state_names=self.state_names, action_names=self.action_names,
                          layout="SAS")

    def __repr__(self) -> str:
        kind = "sparse" if self.is_sparse else "dense"
        return (f"TabularMDP(S={self.n_states}, A={self.n_actions}, gamma={self.gamma}, {kind}, "
                f"terminal={int(self.terminal.sum())})")
