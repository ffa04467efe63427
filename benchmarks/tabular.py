"""Tabular Q-learning throughput: policylab's compiled path vs Python loops and pymdptoolbox.

    python benchmarks/tabular.py [--steps 10_000_000] [--python-steps 200_000] [--repeats 3]

Measured in one run, interleaved round by round, on FrozenLake 4×4 and 8×8 (slippery,
γ = 0.99), α = 0.1, ε = 0.1:
  1. policylab compiled path, one stream (numba kernel on the TabularMDP's CSR arrays)
  2. policylab compiled path, ``seeds=[0..31]``: 32 independent runs in one call, parallel
     over the cores (each seed = a separate call with that seed, bit for bit)
  3. policylab Python path on the same MDP (same random stream, identical numbers)
  4. a straightforward Python Q-learning loop over gymnasium's FrozenLake-v1
  5. policylab's Python path over the same gymnasium env
  6. row 2 with ``numba.set_num_threads(1)``: its CPU time against row 2's is what the second
     thread costs (false sharing, spinning, serial parts), its wall time what it gains
  7. pymdptoolbox ``mdptoolbox.mdp.QLearning`` (its own loop; 4×4 only)
Each row: minimum wall and CPU seconds over --repeats runs. Targets (issue 18): one stream
≥ 25M updates/s on 4×4 and 8×8; 32 seeds on 2 cores ≥ 1.8× the one-stream rate; ≥ 200× the
plain gymnasium loop. The machine may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym
import numpy as np

from policylab import tabular
from policylab.mdp import catalog

ALPHA, EPSILON, GAMMA = 0.1, 0.1, 0.99


def best_time(fn, repeats: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process) over `repeats` runs. On a shared
    machine wall time includes waiting for a core; CPU time does not."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def plain_gym_q_learning(env, steps: int, seed: int = 0) -> np.ndarray:
    """The loop most tutorials write: ε-greedy on a numpy Q table, gymnasium step/reset."""
    rng = np.random.default_rng(seed)
    Q = np.zeros((env.observation_space.n, env.action_space.n))
    s, _ = env.reset(seed=seed)
    for _ in range(steps):
        a = int(rng.integers(env.action_space.n)) if rng.random() < EPSILON else int(np.argmax(Q[s]))
        s2, r, terminated, truncated, _ = env.step(a)
        target = r + (0.0 if terminated else GAMMA * Q[s2].max())
        Q[s, a] += ALPHA * (target - Q[s, a])
        s = s2
        if terminated or truncated:
            s, _ = env.reset()
    return Q


ONE_THREAD = "policylab compiled, seeds=[0..{last}], numba.set_num_threads(1)"


def one_thread(fn):
    """fn() with numba's parallel loops on one thread: the same work as the 2-thread row, so
    CPU s per update compares the two (≈ equal: no false sharing, spinning or serial part),
    and wall s shows the speed-up the machine's scheduler actually gave the second thread."""
    import numba

    n = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return fn()
    finally:
        numba.set_num_threads(n)


def measure(name: str, env_kw: dict, args, steps: int, seed_steps: int, py_steps: int,
            seeds: list[int]) -> tuple[list, tuple]:
    """Rows (method, updates, best wall s, best CPU s) for one FrozenLake map, interleaved."""
    from _common import best_of_interleaved

    mdp = catalog.get(name, gamma=GAMMA)
    tabular.q_learning(mdp, 10, ALPHA, EPSILON)  # load the cached numba kernels
    tabular.q_learning(mdp, 10, ALPHA, EPSILON, seeds=[0, 1])
    env = gym.make("FrozenLake-v1", **env_kw)
    fns = {
        "policylab compiled, one stream": (steps, lambda: tabular.q_learning(
            mdp, steps, ALPHA, EPSILON)),
        f"policylab compiled, seeds=[0..{len(seeds) - 1}] in one call": (
            seed_steps * len(seeds), lambda: tabular.q_learning(
                mdp, seed_steps, ALPHA, EPSILON, seeds=seeds)),
        "policylab Python path, same TabularMDP": (py_steps, lambda: tabular.q_learning(
            mdp, py_steps, ALPHA, EPSILON, backend="python")),
        "plain Python Q-learning loop, gymnasium": (
            py_steps, lambda: plain_gym_q_learning(env, py_steps)),
        "policylab Python path, gymnasium env": (py_steps, lambda: tabular.q_learning(
            env, py_steps, ALPHA, EPSILON, gamma=GAMMA)),
    }
    fns[ONE_THREAD.format(last=len(seeds) - 1)] = (seed_steps * len(seeds), lambda: one_thread(
        lambda: tabular.q_learning(mdp, seed_steps, ALPHA, EPSILON, seeds=seeds)))
    if name == "frozen-lake":
        try:
            import mdptoolbox.mdp

            P = np.ascontiguousarray(mdp.P.transpose(1, 0, 2))  # (A, S, S), pymdptoolbox layout
            R = mdp.expected_reward  # (S, A)

            def toolbox():
                np.random.seed(0)
                mdptoolbox.mdp.QLearning(P, R, GAMMA, n_iter=args.mdptoolbox_iter).run()

            fns["pymdptoolbox mdp.QLearning (own loop)"] = (args.mdptoolbox_iter, toolbox)
        except ImportError:
            print("(pymdptoolbox not installed: pip install pymdptoolbox)")
    load0 = os.getloadavg()[0]
    timed = best_of_interleaved({k: f for k, (_, f) in fns.items()}, args.repeats)
    return [(k, n, timed[k].wall, timed[k].cpu) for k, (n, _) in fns.items()], \
        (load0, os.getloadavg()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=float, default=10_000_000, help="compiled-path updates")
    parser.add_argument("--seed-steps", type=float, default=2_000_000,
                        help="updates per seed in the 32-seed run")
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--python-steps", type=float, default=200_000, help="Python-loop updates")
    parser.add_argument("--mdptoolbox-iter", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    steps, seed_steps, py_steps = int(args.steps), int(args.seed_steps), int(args.python_steps)
    seeds = list(range(args.seeds))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import numba
    from _common import machine_info, markdown_table

    results = {}
    for name, env_kw in (("frozen-lake", {}), ("frozen-lake-8x8", {"map_name": "8x8"})):
        results[name], results[name + " load"] = measure(name, env_kw, args, steps, seed_steps,
                                                         py_steps, seeds)

    for name in ("frozen-lake", "frozen-lake-8x8"):
        rows = results[name]
        one, many, plain = rows[0], rows[1], rows[3]
        rate = {k: n / w for k, n, w, _ in rows}
        cpu_rate = {k: n / c for k, n, _, c in rows}
        print(f"\n## Q-learning on {name} (α={ALPHA}, ε={EPSILON}, γ={GAMMA}), min of "
              f"{args.repeats} interleaved runs; load avg {results[name + ' load'][0]:.1f} → "
              f"{results[name + ' load'][1]:.1f}; numba threads {numba.get_num_threads()}\n")
        body = [[k, f"{n:,}", f"{w:.3f}", f"{n / w / 1e6:.2f}M", f"{c:.3f}", f"{n / c / 1e6:.2f}M",
                 f"{rate[k] / rate[plain[0]]:.1f}×", f"{cpu_rate[k] / cpu_rate[plain[0]]:.1f}×"]
                for k, n, w, c in rows]
        print(markdown_table(["method", "updates", "wall s", "updates/s", "CPU s", "updates/CPU-s",
                              "vs plain gym loop (wall)", "(CPU)"], body))
        r1, rm = rate[one[0]], rate[many[0]]
        print(f"\n- one stream: {r1 / 1e6:.1f}M updates/s wall, {cpu_rate[one[0]] / 1e6:.1f}M per "
              f"CPU-second (target ≥ 25M); {r1 / rate[plain[0]]:.0f}× the plain gymnasium loop "
              f"(target ≥ 200×); {len(seeds)} seeds: {rm / 1e6:.1f}M updates/s wall = "
              f"{rm / r1:.2f}× one stream (target ≥ 1.8× on 2 cores)")
        single = next(r for r in rows if r[0] == ONE_THREAD.format(last=len(seeds) - 1))
        print(f"- {len(seeds)} seeds, {numba.get_num_threads()} threads vs 1 thread: CPU s "
              f"{many[3]:.3f} vs {single[3]:.3f} ({many[3] / single[3]:.2f}×: the cost of the "
              f"second thread), wall s {many[2]:.3f} vs {single[2]:.3f} ({single[2] / many[2]:.2f}× "
              "speed-up from the second thread on this machine at this load)")
    print()
    print(machine_info({"gymnasium": gym.__version__, "numba": numba.__version__}))


if __name__ == "__main__":
    main()
