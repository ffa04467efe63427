"""Built-in MDPs: the lecture's line world, textbook examples, and random Garnet MDPs."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from policylab.errors import InvalidMDPError
from policylab.mdp.model import TabularMDP

LEFT, RIGHT = 0, 1


def line_world(n_states: int = 3, gamma: float = 0.9, reward: float = 1.0) -> TabularMDP:
    """Murphy's 1-d grid world (RL overview, fig 2.1): s1 … s_n in a row and an absorbing goal G.

    Actions left/right; right from s_n enters G with reward +1; left from s1 stays in s1; every
    other reward is 0. G is terminal (last index). With γ > 0:

        Q*(s_i, right) = γ^(n−i),   Q*(s_i, left) = γ^(n−i+2) (i > 1),   Q*(s_1, left) = γ^n
    """
    if int(n_states) < 1:
        raise InvalidMDPError(f"line_world needs n_states >= 1, got {n_states}")
    n = int(n_states)
    S = n + 1
    P = np.zeros((S, 2, S))
    R = np.zeros((S, 2, S))
    for i in range(n):
        P[i, LEFT, max(i - 1, 0)] = 1.0
        P[i, RIGHT, i + 1] = 1.0
    R[n - 1, RIGHT, n] = reward
    P[n, :, n] = 1.0
    names = [f"s{i + 1}" for i in range(n)] + ["G"]
    initial = np.zeros(S)
    initial[0] = 1.0
    return TabularMDP(P, R, gamma, initial=initial, terminal=[n], state_names=names,
                      action_names=["left", "right"], layout="SAS")


def gridworld_5x5(gamma: float = 0.9) -> TabularMDP:
    """Sutton & Barto (2018) example 3.5: 5×5 grid, actions north/south/east/west.

    From A=(0,1) every action teleports to A'=(4,1) with +10; from B=(0,3) to B'=(2,3) with +5;
    an action off the grid leaves the state unchanged with −1; all else 0. No terminal state.
    """
    n = 5
    moves = {"north": (-1, 0), "south": (1, 0), "east": (0, 1), "west": (0, -1)}
    S, A = n * n, len(moves)
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    for r in range(n):
        for c in range(n):
            s = r * n + c
            for a, (dr, dc) in enumerate(moves.values()):
                if (r, c) == (0, 1):
                    P[s, a, 4 * n + 1], R[s, a] = 1.0, 10.0
                elif (r, c) == (0, 3):
                    P[s, a, 2 * n + 3], R[s, a] = 1.0, 5.0
                elif 0 <= r + dr < n and 0 <= c + dc < n:
                    P[s, a, (r + dr) * n + c + dc] = 1.0
                else:
                    P[s, a, s], R[s, a] = 1.0, -1.0
    names = [f"{r},{c}" for r in range(n) for c in range(n)]
    return TabularMDP(P, R, gamma, state_names=names, action_names=list(moves), layout="SAS")


def forest(S: int = 3, r1: float = 4.0, r2: float = 2.0, p: float = 0.1, gamma: float = 0.9) -> TabularMDP:
    """pymdptoolbox's forest-management MDP (``mdptoolbox.example.forest``).

    State = forest age 0 … S−1; action 0 = wait, 1 = cut. Each year a fire (probability p)
    resets the age to 0. Wait: reward r1 in the oldest state, else 0. Cut: age → 0, reward 1,
    r2 in the oldest state, 0 in the youngest.
    """
    if S < 2:
        raise InvalidMDPError(f"forest needs S >= 2, got {S}")
    if not 0.0 <= p <= 1.0:
        raise InvalidMDPError(f"forest fire probability p must be in [0, 1], got {p}")
    P = np.zeros((S, 2, S))
    for s in range(S):
        P[s, 0, 0] += p
        P[s, 0, min(s + 1, S - 1)] += 1.0 - p
        P[s, 1, 0] = 1.0
    R = np.zeros((S, 2))
    R[S - 1, 0] = r1
    R[:, 1] = 1.0
    R[0, 1] = 0.0
    R[S - 1, 1] = r2
    return TabularMDP(P, R, gamma, state_names=[f"age{s}" for s in range(S)],
                      action_names=["wait", "cut"], layout="SAS")


def garnet(S: int, A: int, b: int, seed: int = 0, gamma: float = 0.99,
           sparse: bool | None = None) -> TabularMDP:
    """Random Garnet MDP (Archibald et al. 1995): each (s, a) has b distinct successors.

    Successor probabilities come from b−1 uniform cut points of [0, 1]; R(s, a) ~ U(0, 1).
    P is sparse (CSR, (S·A, S)) when ``sparse`` is True or, by default, when S > 2000.
    """
    P, R = garnet_arrays(S, A, b, seed, sparse)
    return TabularMDP(P, R, gamma, layout="SAS")


def garnet_arrays(S: int, A: int, b: int, seed: int = 0, sparse: bool | None = None):
    """The arrays of :func:`garnet` before validation: (P CSR (S·A, S) or dense (S, A, S),
    R (S, A)); benchmarks time generation and ``TabularMDP`` construction apart."""
    if S < 1 or A < 1 or not 1 <= b <= S:
        raise InvalidMDPError(f"garnet needs S >= 1, A >= 1 and 1 <= b <= S, got S={S}, A={A}, b={b}")
    rng = np.random.default_rng(seed)
    rows = S * A
    fast = b <= 32 and rows * b >= 1 << 16  # compiled row kernels: no (rows, b) temporaries
    succ = _distinct_successors(rng, rows, S, b, fast)  # (S·A, b)
    cuts = rng.random((rows, b - 1))
    cuts.sort(axis=1)
    if fast:
        from policylab.mdp.kernels import spacings

        prob = np.empty((rows, b))
        spacings(cuts, prob)
    else:
        prob = np.diff(np.concatenate([np.zeros((rows, 1)), cuts, np.ones((rows, 1))], axis=1),
                       axis=1)
    del cuts
    prob /= prob.sum(axis=1, keepdims=True)  # exact row sums after round-off
    R = rng.random((S, A))
    if sparse is None:
        sparse = S > 2000
    if sparse:
        idx_dtype = np.int32 if S < 2**31 else np.int64
        if fast:
            from policylab.mdp.kernels import sort_rows_by_key

            sort_rows_by_key(succ, prob)  # the same order as np.argsort: keys are distinct
            succ = succ.astype(idx_dtype)
        else:
            order = np.argsort(succ, axis=1)
            succ = np.take_along_axis(succ, order, axis=1).astype(idx_dtype)
            prob = np.take_along_axis(prob, order, axis=1)
        P = sp.csr_array((prob.reshape(-1), succ.reshape(-1),
                          np.arange(0, rows * b + 1, b, dtype=np.int64 if rows * b >= 2**31 else np.int32)),
                         shape=(rows, S))
    else:
        P = np.zeros((S, A, S))
        P.reshape(rows, S)[np.arange(rows)[:, None], succ] = prob
    return P, R


def _distinct_successors(rng, rows: int, S: int, b: int, fast: bool = False) -> np.ndarray:
    """(rows, b) successor indices, distinct within each row, uniform over subsets."""
    if b * 4 > S:  # dense regime: permutation per row
        return np.argsort(rng.random((rows, S)), axis=1)[:, :b]
    succ = rng.integers(0, S, size=(rows, b))
    while True:
        if fast:
            from policylab.mdp.kernels import rows_with_duplicates

            dup = rows_with_duplicates(succ)
        else:
            srt = np.sort(succ, axis=1)
            dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        if not dup.any():
            return succ
        succ[dup] = rng.integers(0, S, size=(int(dup.sum()), b))


def _gym(env_id: str, gamma: float, **kw) -> TabularMDP:
    import gymnasium as gym

    from policylab.mdp.gym_bridge import from_gymnasium

    return from_gymnasium(gym.make(env_id, **kw), gamma=gamma)


#: CLI name -> (builder, default gamma)
BUILDERS = {
    "line-world": (lambda gamma, **kw: line_world(gamma=gamma, **kw), 0.9),
    "gridworld": (lambda gamma, **kw: gridworld_5x5(gamma=gamma), 0.9),
    "forest": (lambda gamma, **kw: forest(gamma=gamma, **kw), 0.9),
    "frozen-lake": (lambda gamma, **kw: _gym("FrozenLake-v1", gamma, **kw), 0.99),
    "frozen-lake-8x8": (lambda gamma, **kw: _gym("FrozenLake-v1", gamma, map_name="8x8", **kw), 0.99),
    "cliff-walking": (lambda gamma, **kw: _gym("CliffWalking-v1", gamma, **kw), 1.0),
    "taxi": (lambda gamma, **kw: _gym("Taxi-v4" if _has_env("Taxi-v4") else "Taxi-v3", gamma, **kw), 0.99),
    "garnet": (lambda gamma, S=100, A=4, b=4, seed=0, **kw: garnet(S, A, b, seed=seed, gamma=gamma), 0.99),
}

NAMES = tuple(BUILDERS)


def _has_env(env_id: str) -> bool:
    import gymnasium as gym

    return env_id in gym.registry


def get(name: str, gamma: float | None = None, **kwargs) -> TabularMDP:
    """Build a catalog MDP by its CLI name, e.g. ``get("line-world", gamma=0.5)``."""
    if name not in BUILDERS:
        raise InvalidMDPError(f"unknown MDP {name!r}; choose one of: {', '.join(NAMES)}")
    build, default_gamma = BUILDERS[name]
    return build(default_gamma if gamma is None else gamma, **kwargs)
