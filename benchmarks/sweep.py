"""Sweep on local Ray (2 CPUs) vs the same trials one after another in one process.

    python benchmarks/sweep.py                 # 4 configurations × 4 seeds of PPO CartPole, 20k steps
    python benchmarks/sweep.py --steps 4000 --seeds 2 --configs 2    # quick check

Both sides run the identical trial function (:func:`policylab.sweep.trials.run_trial`) with the same
configurations and seeds; every trial is single-threaded (torch, BLAS). Ray's side includes
``ray.init`` (start-up), scheduling and one worker process per CPU (actors reused between trials).
Printed: total wall time per side, Ray start-up, Ray's per-trial overhead
(= (Ray wall − start-up) × CPUs / trials − sequential seconds per trial) and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, markdown_table


def spec(steps: int, seeds: int, configs: int) -> dict:
    """PPO CartPole: learning rate × epochs = 4, 2 or 1 configurations."""
    space = {4: {"learning_rate": {"grid": [3e-4, 1e-3]}, "n_epochs": {"grid": [10, 20]}},
             2: {"n_epochs": {"grid": [10, 20]}}, 1: {}}[configs]
    return {"name": "bench", "kind": "train", "algo": "ppo", "env": "CartPole-v1", "steps": steps,
            "seeds": list(range(seeds)), "metric": "charts/episodic_return", "space": space}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--configs", type=int, default=4, choices=[1, 2, 4])
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--no-cli", action="store_true", help="skip the row of separate `policylab train` processes")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import ray

    from policylab.sweep import load_spec, run
    from policylab.sweep.trials import run_trial

    sp = load_spec(spec(args.steps, args.seeds, args.configs))
    trials = sp.trials()
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        # warm the numba / import caches once so neither side pays first-compile costs
        warm = load_spec(spec(512, 1, 1))
        run_trial(warm, warm.trials()[0], work / "warm")

        t0 = time.perf_counter()
        for t in trials:
            run_trial(sp, t, work / "seq" / "trials" / t.name)
        seq = time.perf_counter() - t0

        cli = None
        if not args.no_cli:  # what a user without `sweep` runs: one `policylab train` process per trial
            t0 = time.perf_counter()
            for t in trials:
                sets = [x for k, v in sp.run_params(t.params).items() for x in ("--set", f"{k}={v}")]
                subprocess.run([sys.executable, "-m", "policylab", "train", "ppo", "--env", sp.env, "--steps",
                                str(sp.steps), "--seed", str(t.seed), "--out", str(work / "cli" / t.name),
                                "--no-progress", *sets], check=True, stdout=subprocess.DEVNULL)
            cli = time.perf_counter() - t0

        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        startup = time.perf_counter() - t0
        run(sp, out=work / "ray")
        ray_wall = time.perf_counter() - t0
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = len(trials)
    per_trial_seq = seq / n
    overhead = (ray_wall - startup) * args.cpus / n - per_trial_seq
    print(f"# Sweep benchmark — {machine_info()}")
    print(f"{n} PPO CartPole-v1 trials ({args.configs} configurations × {args.seeds} seeds, "
          f"{args.steps:,} steps each), ray {ray.__version__}\n")
    rows = [["one process, one trial after another", f"{seq:.1f}", "—", f"{per_trial_seq:.2f}", "1.00×", "—"]]
    if cli is not None:
        rows.append(["`policylab train` processes, one after another", f"{cli:.1f}", "—", f"{cli / n:.2f}",
                     f"{seq / cli:.2f}×", "—"])
    rows.append([f"local Ray, {args.cpus} CPUs", f"{ray_wall:.1f}", f"{startup:.1f}",
                 f"{(ray_wall - startup) * args.cpus / n:.2f}", f"{seq / ray_wall:.2f}×",
                 f"{seq / (ray_wall - startup):.2f}×"])
    print(markdown_table(["side", "total wall s", "Ray start-up s", "s per trial (per CPU)",
                          "speed-up", "speed-up after start-up"], rows))
    print(f"\nRay's per-trial overhead ≈ {overhead:.2f} s (scheduling, actor start, result reporting)")


if __name__ == "__main__":
    main()
