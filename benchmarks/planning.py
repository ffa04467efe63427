"""Value iteration on Garnet MDPs: policylab vs pymdptoolbox vs a plain numpy loop, same run.

MDPs: ``policylab.mdp.catalog.garnet(S, A=10, b=10, seed, gamma=0.99, sparse=True)`` for each
``--sizes`` S (P is CSR (S·A, S) at every size: b ≪ S; all three solvers read the same arrays).

Solvers, all asked for the same accuracy ``--tol`` (default 1e-6):

  policylab      ``planning.value_iteration(mdp, tol)``: MacQueen bounds (bounds=True, the
                 default); returns the midpoint with the guarantee ‖V − V*‖∞ ≤ tol.
  pymdptoolbox   ``mdptoolbox.mdp.ValueIteration(P, R, γ, epsilon=tol)`` with P a list of A CSR
                 (S, S) matrices and R (S, A). It stops when span(V_k − V_{k−1}) < ε(1−γ)/γ,
                 which guarantees an ε-optimal *policy* but returns V_k, off from V* by about a
                 constant; the table shows both its raw ‖V − V*‖∞ and whether its policy is optimal.
                 pymdptoolbox 4.0b3 (the PyPI release) has no ``skip_check`` argument, so the
                 constructor is timed with ``mdptoolbox.util.check`` replaced by a no-op — exactly
                 what ``skip_check=True`` does on its master branch (fair: the MDP is already
                 validated by policylab). ``--peer-checks`` also times the skipped check once.
                 The remaining constructor cost is its iteration-count bound (``_boundIter``,
                 Puterman thm 6.6.6), a Python loop over S sparse column slices: O(S²·A).
  numpy loop     Q = R + γ·(P @ V).reshape(S, A); V = Q.max(1);
                 stop when γ/(1−γ)·‖ΔV‖∞ ≤ tol (guarantees ‖V − V*‖∞ ≤ tol).

Reference V*: ``planning.policy_iteration`` (exact evaluation: GMRES to 1e-13), cross-checked
against ``value_iteration(tol=1e-10)`` (the "ref check" in the notes). Every method's V and greedy
policy are compared with it.

Timing: the solves are repeated ``--repeat`` times, interleaved method by method, and the MINIMUM
wall time and the minimum CPU time (process_time; steadier on a shared, loaded machine, and all
three solvers are single-threaded) are reported; a solve slower than 30 s runs once.
Constructors (O(S²) for pymdptoolbox) run once. "build" = policylab's TabularMDP(P, R, γ)
constructor (validation) or pymdptoolbox's ValueIteration constructor; Garnet generation itself
is reported in the notes. "ratio" = seconds / policylab's seconds (>1: policylab is faster).

Headline (``--big``, default on, run first): garnet(S=1,000,000, A=4, b=4) solved by policylab
value iteration in a fresh subprocess, once; generation (``catalog.garnet_arrays``, reported,
not part of the target), build (``TabularMDP(P, R, γ)``) and solve wall/CPU times and the subprocess's
peak RSS (VmHWM from /proc; RUSAGE_CHILDREN is shown too, but a forked child's ru_maxrss starts
from the parent's RSS at fork time, hence the headline runs while the parent is small).

    python benchmarks/planning.py                       # S = 1k, 10k, 100k + the 1M headline
    python benchmarks/planning.py --sizes 1000 --no-big --repeat 9
    python benchmarks/planning.py --sizes                  # only the 1M headline
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import contextlib
import json
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (
    Timer,
    best_of_interleaved,
    children_peak_rss_mib,
    machine_info,
    markdown_table,
    peak_rss_mib,
)

from policylab import planning
from policylab.mdp import TabularMDP, catalog

GAMMA = 0.99
HEADLINE = {"S": 1_000_000, "A": 4, "b": 4}
LIMIT_SECONDS, LIMIT_GIB = 8.0, 0.7  # issue 18: build + solve ≤ 8 s, peak RSS ≤ 0.7 GiB
REPEAT_UNDER_SECONDS = 30.0  # solves slower than this are not repeated


# ---------------------------------------------------------------- the numpy baseline
def numpy_value_iteration(P2d, R, gamma: float, tol: float, max_iter: int = 1_000_000):
    """Plain value iteration: V ← max_a [R + γ P V], stop when γ/(1−γ)·‖ΔV‖∞ ≤ tol.

    P2d (S·A, S) dense or CSR, row s·A + a; R (S, A). Returns (V (S,), Q (S, A), sweeps)."""
    S, A = R.shape
    V = np.zeros(S)
    c = gamma / (1.0 - gamma)
    for k in range(1, max_iter + 1):
        Q = R + gamma * (P2d @ V).reshape(S, A)  # (S, A)
        V_new = Q.max(axis=1)  # (S,)
        delta = np.max(np.abs(V_new - V))
        V = V_new
        if c * delta <= tol:
            return V, Q, k
    raise RuntimeError(f"numpy value iteration did not reach tol={tol} in {max_iter} sweeps")


# ---------------------------------------------------------------- pymdptoolbox
@contextlib.contextmanager
def _skip_check():
    """pymdptoolbox master's ``skip_check=True``: MDP.__init__ without ``util.check(P, R)``."""
    import mdptoolbox.util

    saved = mdptoolbox.util.check
    mdptoolbox.util.check = lambda P, R: None
    try:
        yield
    finally:
        mdptoolbox.util.check = saved


def toolbox_inputs(mdp):
    """(P as a list of A CSR (S, S) matrices P[a][s, s'], R (S, A)) from a policylab MDP."""
    A = mdp.n_actions
    P = sp.csr_matrix(mdp.transition_matrix())
    return [sp.csr_matrix(P[a::A]) for a in range(A)], mdp.expected_reward.copy()


def toolbox_solver(mdp, tol: float):
    """Build pymdptoolbox's ValueIteration (check skipped, timed); returns (ctor s, solve())."""
    import mdptoolbox.mdp

    P, R = toolbox_inputs(mdp)
    with Timer() as t, _skip_check():
        vi = mdptoolbox.mdp.ValueIteration(P, R, mdp.gamma, epsilon=tol)
    max_iter = vi.max_iter

    def solve():
        vi.V, vi.iter, vi.max_iter = np.zeros(mdp.n_states), 0, max_iter  # fresh start each run
        vi.run()
        return np.asarray(vi.V), np.asarray(vi.policy), vi.iter

    return t.seconds, solve


def time_toolbox_check(mdp) -> float:
    import warnings

    import mdptoolbox.util

    P, R = toolbox_inputs(mdp)
    with Timer() as t, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdptoolbox.util.check(P, R)
    return t.seconds


# ---------------------------------------------------------------- one size
def compare(S: int, A: int = 10, b: int = 10, seed: int = 0, tol: float = 1e-6, repeat: int = 3,
            peer: bool = True, peer_checks: bool = False, log=print) -> tuple[list[dict], dict]:
    """Solve garnet(S, A, b, seed) with every method; return (rows, notes)."""
    with Timer() as t_gen:
        mdp = catalog.garnet(S, A, b, seed=seed, gamma=GAMMA, sparse=True)
    with Timer() as t_build:  # policylab's constructor alone: validation + expected reward
        TabularMDP(mdp.P, mdp.R, mdp.gamma)
    log(f"S={S}: garnet {t_gen.seconds:.2f} s; reference (policy iteration) ...")
    with Timer() as t_ref:
        ref = planning.policy_iteration(mdp)
    ref_check = float(np.abs(planning.value_iteration(mdp, tol=1e-10).V - ref.V).max())
    notes = {"S": S, "nnz": int(mdp.P.nnz), "garnet_s": t_gen.seconds, "reference_s": t_ref.seconds,
                 "reference_iterations": ref.iterations, "ref_check": ref_check}

    P2d, R = mdp.transition_matrix(), mdp.expected_reward
    fns = {
        "policylab": lambda: planning.value_iteration(mdp, tol=tol),
        "numpy loop": lambda: numpy_value_iteration(P2d, R, mdp.gamma, tol),
    }
    build = {"policylab": t_build.seconds, "numpy loop": 0.0}
    if peer:
        log(f"S={S}: pymdptoolbox constructor (check skipped) ...")
        build["pymdptoolbox"], fns["pymdptoolbox"] = toolbox_solver(mdp, tol)
        if peer_checks:
            log(f"S={S}: pymdptoolbox util.check (timed once) ...")
            notes["toolbox_check_s"] = time_toolbox_check(mdp)
    log(f"S={S}: solving, {repeat} interleaved rounds ...")
    timed = best_of_interleaved(fns, repeat, skip_after=REPEAT_UNDER_SECONDS)

    rows = []
    for name, best in timed.items():
        res = best.result
        if name == "policylab":
            V, pi, iters = res.V, res.policy, res.iterations
        elif name == "numpy loop":
            V, Q, iters = res
            pi = Q.argmax(axis=1)
        else:
            V, pi, iters = res
        rows.append({"S": S, "method": name, "solve_s": best.wall, "solve_cpu_s": best.cpu,
                         "build_s": build[name], "iterations": int(iters), "runs": best.runs,
                         "err": float(np.abs(V - ref.V).max()),
                         "policy_diff": int((np.asarray(pi) != ref.policy).sum())})
    base = next(r for r in rows if r["method"] == "policylab")
    for r in rows:
        r["ratio_solve"] = r["solve_s"] / base["solve_s"]
        r["ratio_cpu"] = r["solve_cpu_s"] / base["solve_cpu_s"]
        r["ratio_total"] = (r["solve_s"] + r["build_s"]) / (base["solve_s"] + base["build_s"])
    return rows, notes


def format_rows(rows: list[dict]) -> str:
    headers = ["S", "method", "solve s", "solve CPU s", "runs", "build s", "iterations",
               "CPU ms/iter", "‖V−V*‖∞", "policy = π*", "ratio solve", "ratio CPU",
               "ratio build+solve"]
    body = []
    for r in rows:
        pol = "yes" if r["policy_diff"] == 0 else f"no ({r['policy_diff']} states)"
        body.append([f"{r['S']:,}", r["method"], f"{r['solve_s']:.3f}", f"{r['solve_cpu_s']:.3f}",
                     r["runs"],
                     f"{r['build_s']:.3f}", r["iterations"],
                     f"{1e3 * r['solve_cpu_s'] / r['iterations']:.2f}", f"{r['err']:.1e}", pol,
                     f"{r['ratio_solve']:.1f}×", f"{r['ratio_cpu']:.1f}×",
                     f"{r['ratio_total']:.1f}×"])
    return markdown_table(headers, body)


# ---------------------------------------------------------------- dense input, end to end
DENSE = {"S": 2000, "A": 10, "b": 10}


def dense_arrays(S: int, A: int, b: int, seed: int = 0):
    """garnet(S, A, b) as pymdptoolbox's dense arrays: P (A, S, S) float64, R (S, A)."""
    mdp = catalog.garnet(S, A, b, seed=seed, gamma=GAMMA, sparse=True)
    P = np.ascontiguousarray(mdp.P.toarray().reshape(S, A, S).transpose(1, 0, 2))  # (A, S, S)
    return P, mdp.expected_reward.copy(), mdp


def dense_compare(S: int, A: int, b: int, seed: int = 0, tol: float = 1e-6, repeat: int = 3,
                  log=print) -> tuple[list[dict], dict]:
    """End to end from the same dense arrays (construction + solve → V and the optimal
    policy): policylab ``TabularMDP(P, R, γ, layout="ASS")`` (one pass: checked, stored as CSR)
    + ``value_iteration(tol)``, against pymdptoolbox's ValueIteration and PolicyIteration
    (constructor + run; ``util.check`` skipped, timed once in the notes)."""
    import warnings

    import mdptoolbox.mdp

    P, R, mdp = dense_arrays(S, A, b, seed)
    ref = planning.policy_iteration(mdp)
    log(f"dense S={S} A={A} b={b}: {P.nbytes / 2**20:.0f} MiB; warming up ...")

    def ours():
        m = TabularMDP(P, R, GAMMA, layout="ASS")
        res = planning.value_iteration(m, tol=tol)
        return res.V, res.policy, m.is_sparse

    def toolbox(cls, **kw):
        def run():
            with _skip_check(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                solver = cls(P, R, GAMMA, **kw)
                solver.run()
            return np.asarray(solver.V), np.asarray(solver.policy), None
        return run

    fns = {"policylab": ours,
           "pymdptoolbox ValueIteration": toolbox(mdptoolbox.mdp.ValueIteration, epsilon=tol),
           "pymdptoolbox PolicyIteration": toolbox(mdptoolbox.mdp.PolicyIteration)}
    ours()  # load the compiled scan/sweep from numba's cache outside the timing
    log(f"dense: {repeat} interleaved rounds ...")
    timed = best_of_interleaved(fns, repeat)
    rows = []
    for name, best in timed.items():
        V, pi, _ = best.result
        rows.append({"method": name, "wall_s": best.wall, "cpu_s": best.cpu, "runs": best.runs,
                     "err": float(np.abs(V - ref.V).max()),
                     "policy_diff": int((pi != ref.policy).sum())})
    base = rows[0]
    for r in rows:
        r["ratio_wall"], r["ratio_cpu"] = r["wall_s"] / base["wall_s"], r["cpu_s"] / base["cpu_s"]
    with Timer() as t_check:
        import mdptoolbox.util

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mdptoolbox.util.check(P, R)
    notes = {"S": S, "A": A, "b": b, "mib": P.nbytes / 2**20, "csr": bool(timed["policylab"].result[2]),
             "check_s": t_check.seconds}
    return rows, notes


def format_dense(rows: list[dict]) -> str:
    headers = ["method", "wall s", "CPU s", "runs", "‖V−V*‖∞", "policy = π*", "ratio wall",
               "ratio CPU"]
    body = [[r["method"], f"{r['wall_s']:.3f}", f"{r['cpu_s']:.3f}", r["runs"], f"{r['err']:.1e}",
             "yes" if r["policy_diff"] == 0 else f"no ({r['policy_diff']} states)",
             f"{r['ratio_wall']:.1f}×", f"{r['ratio_cpu']:.1f}×"] for r in rows]
    return markdown_table(headers, body)


# ---------------------------------------------------------------- the 1M headline
def headline_worker(S: int, A: int, b: int, seed: int, tol: float) -> dict:
    """Generate, build and solve one large Garnet MDP in THIS process; report times and peak
    RSS. "build" is issue 18's: ``TabularMDP(P, R, γ)`` from the arrays (validation and
    normalization); generating the random arrays is timed apart and not part of the target."""
    clock = [time.process_time()]

    def cpu():
        clock.append(time.process_time())
        return clock[-1] - clock[-2]

    with Timer() as t_gen:
        P, R = catalog.garnet_arrays(S, A, b, seed=seed, sparse=True)
    gen_cpu = cpu()
    with Timer() as t_build:
        mdp = TabularMDP(P, R, GAMMA, layout="SAS")
    build_cpu = cpu()
    with Timer() as t_solve:
        res = planning.value_iteration(mdp, tol=tol)
    solve_cpu = cpu()
    return {"S": S, "A": A, "b": b, "nnz": int(mdp.P.nnz), "generate_s": t_gen.seconds,
            "build_s": t_build.seconds, "solve_s": t_solve.seconds, "generate_cpu_s": gen_cpu,
            "build_cpu_s": build_cpu, "solve_cpu_s": solve_cpu,
            "iterations": int(res.iterations), "bound": float(res.residual),
            "converged": bool(res.converged), "peak_rss_mib": peak_rss_mib(),
            "load_avg": os.getloadavg()}


def headline(S: int, A: int, b: int, seed: int = 0, tol: float = 1e-6) -> dict:
    """Run headline_worker in a fresh subprocess so its peak RSS is its own."""
    cmd = [sys.executable, os.path.abspath(__file__), "--headline-worker",
           json.dumps({"S": S, "A": A, "b": b, "seed": seed, "tol": tol})]
    with Timer() as t:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall_s"] = t.seconds  # includes interpreter start and imports
    res["children_maxrss_mib"] = children_peak_rss_mib()
    return res


def format_headline(h: dict) -> str:
    total, total_cpu = h["build_s"] + h["solve_s"], h["build_cpu_s"] + h["solve_cpu_s"]
    gib = h["peak_rss_mib"] / 1024.0

    def ok(seconds):
        return "yes" if seconds <= LIMIT_SECONDS and gib <= LIMIT_GIB and h["converged"] else "NO"

    headers = ["S", "A", "b", "nnz", "generate s (CPU)", "build s (CPU)", "solve s (CPU)",
               "build+solve s", "build+solve CPU s", "iterations", "bound ‖V−V*‖∞",
               "peak RSS GiB", f"≤ {LIMIT_SECONDS:.0f} s and ≤ {LIMIT_GIB:g} GiB (wall / CPU)"]
    return markdown_table(headers, [[f"{h['S']:,}", h["A"], h["b"], f"{h['nnz']:,}",
                                     f"{h['generate_s']:.1f} ({h['generate_cpu_s']:.1f})",
                                     f"{h['build_s']:.2f} ({h['build_cpu_s']:.2f})",
                                     f"{h['solve_s']:.1f} ({h['solve_cpu_s']:.1f})",
                                     f"{total:.1f}", f"{total_cpu:.1f}", h["iterations"],
                                     f"{h['bound']:.1e}", f"{gib:.2f}",
                                     f"{ok(total)} / {ok(total_cpu)}"]])


# ---------------------------------------------------------------- where policylab's time goes
def proposed_value_iteration(mdp, tol: float):
    """policylab's value iteration (same MacQueen stop and midpoint) with a leaner sweep:
    γP pre-scaled once, R + γPV written into one preallocated (S, A) buffer, and the max over
    actions as A−1 column-wise np.maximum calls instead of ``.max(axis=1)`` (slow for small A).
    For MDPs without terminal states (Garnet). Returns (V (S,), sweeps)."""
    S, A, g = mdp.n_states, mdp.n_actions, mdp.gamma
    if mdp.terminal.any():
        raise ValueError("proposed_value_iteration is a sketch for MDPs without terminal states")
    c = g / (1.0 - g)
    gP, R = sp.csr_array(mdp.transition_matrix() * g), mdp.expected_reward
    Q, V, V_new = np.empty((S, A)), np.zeros(S), np.empty(S)
    for k in range(1, 1_000_000):
        np.add((gP @ V).reshape(S, A), R, out=Q)  # (S, A) = R + γ P V
        np.maximum(Q[:, 0], Q[:, min(1, A - 1)], out=V_new)
        for a in range(2, A):
            np.maximum(V_new, Q[:, a], out=V_new)
        d = V_new - V
        lo, hi = float(d.min()), float(d.max())
        V, V_new = V_new, V
        if c * (hi - lo) / 2.0 <= tol:
            return V + c * (hi + lo) / 2.0, k
    raise RuntimeError("no convergence")


def _numba_sweep():
    import numba

    @numba.njit(cache=False)
    def sweep(indptr, indices, gdata, R, V, out):  # one fused pass: out = max_a R + γPV, d range
        S, A = R.shape
        lo, hi = np.inf, -np.inf
        for s in range(S):
            best = -np.inf
            for a in range(A):
                row = s * A + a
                acc = R[s, a]
                for k in range(indptr[row], indptr[row + 1]):
                    acc += gdata[k] * V[indices[k]]
                best = max(best, acc)
            out[s] = best
            lo, hi = min(lo, best - V[s]), max(hi, best - V[s])
        return lo, hi

    return sweep


def numba_value_iteration(mdp, tol: float, sweep):
    """The same stop and midpoint with a fused numba sweep (no (S·A) temporaries)."""
    S, g = mdp.n_states, mdp.gamma
    c = g / (1.0 - g)
    P = mdp.transition_matrix()
    gdata, R = P.data * g, mdp.expected_reward
    V, V_new = np.zeros(S), np.empty(S)
    for k in range(1, 1_000_000):
        lo, hi = sweep(P.indptr, P.indices, gdata, R, V, V_new)
        V, V_new = V_new, V
        if c * (hi - lo) / 2.0 <= tol:
            return V + c * (hi + lo) / 2.0, k
    raise RuntimeError("no convergence")


def profile(S: int, A: int, b: int, seed: int = 0, tol: float = 1e-6, repeat: int = 3) -> str:
    """CPU time per sweep of policylab's value iteration, its two main costs, and two variants."""
    mdp = catalog.garnet(S, A, b, seed=seed, gamma=GAMMA, sparse=True)
    P = mdp.transition_matrix()
    V = np.linspace(0.0, 50.0, S)
    PV = (P @ V).reshape(S, A)
    sweep = _numba_sweep()
    small = catalog.garnet(20, A, min(b, 20), seed=1, gamma=GAMMA, sparse=True)
    numba_value_iteration(small, tol, sweep)  # compile outside the timing
    n = max(1, int(2e7 // max(P.nnz, 1)))  # repetitions of the one-pass pieces
    timed = best_of_interleaved({
        "policylab value_iteration": lambda: planning.value_iteration(mdp, tol=tol),
        "proposed numpy sweep": lambda: proposed_value_iteration(mdp, tol),
        "numba fused sweep": lambda: numba_value_iteration(mdp, tol, sweep),
        "piece: scipy CSR P @ V": lambda: [P @ V for _ in range(n)],
        "piece: (S, A).max(axis=1)": lambda: [PV.max(axis=1) for _ in range(n)],
    }, repeat)
    ref = timed["policylab value_iteration"].result
    rows = []
    for name, best in timed.items():
        if name.startswith("piece"):
            rows.append([name, "—", f"{1e3 * best.cpu / n:.2f}", "—"])
            continue
        res = best.result
        V_m, k = (res.V, res.iterations) if name.startswith("policylab") else res
        rows.append([name, k, f"{1e3 * best.cpu / k:.2f}", f"{np.abs(V_m - ref.V).max():.1e}"])
    head = (f"## Profile: garnet(S={S:,}, A={A}, b={b}), CPU ms per sweep (min of {repeat}, "
            "process_time; the policylab row's solve also computes its final Q: one more P @ V)\n\n")
    return head + markdown_table(["variant", "sweeps", "CPU ms/sweep", "‖V − V_policylab‖∞"], rows)


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10_000, 100_000],
                    help="numbers of states S (A=10, b=10); none: only the headline")
    ap.add_argument("--big", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the S=1,000,000, A=4, b=4 headline (subprocess)")
    ap.add_argument("--repeat", type=int, default=5,
                    help="interleaved rounds; the minimum is reported")
    ap.add_argument("--tol", type=float, default=1e-6,
                    help="accuracy target ‖V − V*‖∞ (and ε for pymdptoolbox)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peer-max-states", type=int, default=10_000,
                    help="run pymdptoolbox only up to this S (its constructor is O(S²))")
    ap.add_argument("--peer-checks", action="store_true",
                    help="also time pymdptoolbox's util.check(P, R) once per size "
                         "(slow: minutes at 10k)")
    ap.add_argument("--profile", type=int, nargs=3, metavar=("S", "A", "b"),
                    help="only profile policylab's sweep on garnet(S, A, b) against two variants")
    ap.add_argument("--no-dense", dest="dense", action="store_false",
                    help="skip the dense-input comparison (S=2000, A=10, b=10, end to end)")
    ap.add_argument("--headline-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.headline_worker:
        kw = json.loads(args.headline_worker)
        print(json.dumps(headline_worker(**kw)))
        return 0
    if args.repeat < 1 or not args.tol > 0 or any(s < 2 for s in args.sizes):
        ap.error("--repeat must be >= 1, --tol > 0 and every size >= 2")

    if args.profile:
        print(profile(*args.profile, seed=args.seed, tol=args.tol, repeat=args.repeat))
        print()
        print(machine_info())
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    import mdptoolbox

    h = None
    if args.big:  # first, while this parent is small: a forked child's ru_maxrss starts at ours
        log(f"headline: garnet(S={HEADLINE['S']:,}, A={HEADLINE['A']}, b={HEADLINE['b']}) "
            "in a subprocess ...")
        h = headline(**HEADLINE, seed=args.seed, tol=args.tol)
    dense = dense_compare(**DENSE, seed=args.seed, tol=args.tol, repeat=args.repeat, log=log) \
        if args.dense else None
    all_rows, all_notes = [], []
    for S in args.sizes:
        rows, notes = compare(S, seed=args.seed, tol=args.tol, repeat=args.repeat,
                              peer=S <= args.peer_max_states, peer_checks=args.peer_checks, log=log)
        all_rows += rows
        all_notes.append(notes)
    if all_rows:
        print(f"## Value iteration on Garnet MDPs (A=10, b=10, γ={GAMMA}, tol={args.tol:g})\n")
        print(format_rows(all_rows))
        print()
        print("- solve s / solve CPU s: minimum wall / CPU (process_time) seconds over `runs` "
              "runs, interleaved method by method (a solve slower than "
              f"{REPEAT_UNDER_SECONDS:.0f} s runs once); ratios are method / policylab "
              "(> 1: policylab faster)")
    for n in all_notes:
        extra = (f"; pymdptoolbox util.check(P, R) (skipped above) took "
                 f"{n['toolbox_check_s']:.1f} s"
                 if "toolbox_check_s" in n else "")
        print(f"- S={n['S']:,}: nnz(P)={n['nnz']:,}; garnet generation {n['garnet_s']:.2f} s; "
              f"reference V* by policy iteration ({n['reference_iterations']} steps, "
              f"{n['reference_s']:.2f} s), "
              f"ref check ‖V_PI − V_VI(1e-10)‖∞ = {n['ref_check']:.1e}{extra}")
    skipped = [S for S in args.sizes if S > args.peer_max_states]
    if skipped:
        sizes = ", ".join(f"{s:,}" for s in skipped)
        print(f"- pymdptoolbox not run at S={sizes}: its constructor's "
              "iteration bound is O(S²·A) (--peer-max-states)")
    if any(r["method"] == "pymdptoolbox" for r in all_rows):
        print("- pymdptoolbox: 'build' is ValueIteration(...) with util.check skipped "
              "(= skip_check=True on its master; 4.0b3 lacks the flag), run once; its span stop "
              "bounds the policy's loss, not V: reaching ‖V−V*‖∞ ≤ tol by plain sweeps costs "
              "what the numpy loop row shows")
    if dense is not None:
        rows, n = dense
        print(f"\n## Dense input, end to end: garnet(S={n['S']:,}, A={n['A']}, b={n['b']}) as "
              f"pymdptoolbox's dense (A, S, S) array ({n['mib']:.0f} MiB), γ={GAMMA}, "
              f"tol={args.tol:g}\n")
        print(format_dense(rows))
        print(f"\n- policylab: TabularMDP(P, R, γ, layout='ASS') (one pass over P: checked, stored "
              f"as CSR: {n['csr']}) + value_iteration; pymdptoolbox: constructor + run with "
              f"util.check skipped (it takes {n['check_s']:.2f} s on these arrays); "
              "ratio = method / policylab (> 1: policylab faster); min over interleaved runs")
    if h is not None:
        print("\n## Headline: policylab value iteration, one run in a fresh subprocess "
              f"(tol={args.tol:g})\n")
        print(format_headline(h))
        print("\n- generate = `catalog.garnet_arrays` (random CSR P and R, not part of the "
              "target); build = `TabularMDP(P, R, γ)` (validation); solve = `value_iteration` "
              "incl. the final Q and greedy policy. CPU = time.process_time of the subprocess; "
              "on a loaded machine wall time exceeds CPU time (load average at its end: "
              + " ".join(f"{x:.1f}" for x in h["load_avg"]) + ")")
        print(f"- subprocess wall time incl. interpreter start and imports: {h['wall_s']:.1f} s; "
              f"RUSAGE_CHILDREN maxrss: {h['children_maxrss_mib'] / 1024:.2f} GiB")
    print()
    print(machine_info({"pymdptoolbox": getattr(mdptoolbox, "__version__", "4.0b3")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
