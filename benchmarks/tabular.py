"""Tabular Q-learning throughput: policylab's compiled path vs Python loops and pymdptoolbox.

    python benchmarks/tabular.py [--steps 10_000_000] [--python-steps 200_000] [--repeats 3]

Measured in one run on FrozenLake 4×4 (slippery, γ = 0.99), α = 0.1, ε = 0.1:
  1. policylab compiled path (numba kernel on the TabularMDP's CSR arrays)
  2. policylab Python path on the same MDP (same random stream, identical numbers)
  3. a straightforward Python Q-learning loop over gymnasium's FrozenLake-v1
  4. policylab's Python path over the same gymnasium env
  5. pymdptoolbox ``mdptoolbox.mdp.QLearning`` (its own loop; n_iter ≥ 10 000 is forced)
Each row is the best of --repeats runs (wall clock, one thread). Prints a Markdown table.
Targets: compiled ≥ 10M updates/s and ≥ 50× the plain gymnasium loop.
"""

from __future__ import annotations

import argparse
import os
import platform
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=float, default=10_000_000, help="compiled-path updates")
    parser.add_argument("--python-steps", type=float, default=200_000, help="Python-loop updates")
    parser.add_argument("--mdptoolbox-iter", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    steps, py_steps, reps = int(args.steps), int(args.python_steps), args.repeats

    mdp = catalog.get("frozen-lake", gamma=GAMMA)
    t0 = time.perf_counter()
    tabular.q_learning(mdp, 10, ALPHA, EPSILON)  # load (or compile) the cached numba kernel
    warmup = time.perf_counter() - t0

    rows = []  # (method, updates, seconds)
    rows.append(("policylab compiled (numba), TabularMDP", steps,
                 best_time(lambda: tabular.q_learning(mdp, steps, ALPHA, EPSILON), reps)))
    rows.append(("policylab Python path, same TabularMDP", py_steps,
                 best_time(lambda: tabular.q_learning(mdp, py_steps, ALPHA, EPSILON,
                                                      backend="python"), reps)))
    env = gym.make("FrozenLake-v1")
    rows.append(("plain Python Q-learning loop, gymnasium FrozenLake-v1", py_steps,
                 best_time(lambda: plain_gym_q_learning(env, py_steps), reps)))
    rows.append(("policylab Python path, gymnasium FrozenLake-v1", py_steps,
                 best_time(lambda: tabular.q_learning(env, py_steps, ALPHA, EPSILON, gamma=GAMMA),
                           reps)))
    try:
        import mdptoolbox.mdp

        P = np.ascontiguousarray(mdp.P.transpose(1, 0, 2))  # (A, S, S), pymdptoolbox layout
        R = mdp.expected_reward  # (S, A)

        def toolbox():
            np.random.seed(0)
            mdptoolbox.mdp.QLearning(P, R, GAMMA, n_iter=args.mdptoolbox_iter).run()

        rows.append(("pymdptoolbox mdp.QLearning (own loop)", args.mdptoolbox_iter,
                     best_time(toolbox, reps)))
    except ImportError:
        print("(pymdptoolbox not installed: pip install pymdptoolbox)")

    compiled_rate = rows[0][1] / rows[0][2][0]
    compiled_cpu_rate = rows[0][1] / rows[0][2][1]
    print(f"\nTabular Q-learning on FrozenLake 4x4 (S=16, A=4), alpha={ALPHA}, epsilon={EPSILON}, "
          f"gamma={GAMMA}; best of {reps}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}; numba kernel load "
          f"{warmup:.2f} s (first ever call compiles, then cached)\n")
    print("| method | updates | seconds | updates/s | ratio vs compiled | CPU s | updates/CPU-s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n, (sec, cpu) in rows:
        rate = n / sec
        print(f"| {name} | {n:,} | {sec:.3f} | {rate:,.0f} | {rate / compiled_rate:.4f}x "
              f"| {cpu:.3f} | {n / cpu:,.0f} |")
    plain, plain_cpu = rows[2][1] / rows[2][2][0], rows[2][1] / rows[2][2][1]
    print(f"\ncompiled: {compiled_rate / 1e6:.1f}M updates/s wall, {compiled_cpu_rate / 1e6:.1f}M per "
          f"CPU-second (target >= 10M); {compiled_rate / plain:.0f}x the plain gymnasium loop wall, "
          f"{compiled_cpu_rate / plain_cpu:.0f}x in CPU time (target >= 50x)")


if __name__ == "__main__":
    main()
