"""Off-policy deep RL: policylab DQN and SAC vs Stable-Baselines3, env steps and time to solve.

Both sides use rl-baselines3-zoo's hyperparameters (the bundled presets, hyperparams/dqn.yml and
sac.yml): DQN on CartPole-v1 (lr 2.3e-3, batch 64, buffer 1e5, learning_starts 1000,
target_update_interval 10, train_freq 256, gradient_steps 128, ε 1 → 0.04 over 16% of the run,
[256, 256] ReLU Q-net, Huber loss, max_grad_norm 10) and SAC on Pendulum-v1 (lr 1e-3, SB3
defaults: batch 256, τ 0.005, train_freq 1, gradient_steps 1, learned α with H̄ = −1,
[256, 256] ReLU actor and twin critics). Differences that remain: policylab's MLPs are
orthogonally initialised (SB3: torch's default), SAC's actor has one output layer for mean and
log σ (SB3: two heads on the same body — the same function class).

Sides run interleaved seed by seed in ONE process (order rotating with the seed), one thread
each (torch.set_num_threads(1), OMP_NUM_THREADS=1). Evaluation is the same code for both: at the
first training-iteration boundary past each multiple of --eval-every env steps, 10 episodes of a
separate SyncVectorEnv (reseeded identically), greedy/mean actions. A run solves at its first
evaluation with mean return ≥ the threshold (CartPole 475, Pendulum −200), and stops there or at
the cap (CartPole 60k, Pendulum 20k; the ε schedule runs over the cap on both sides).

Reported per run: env steps at the solving evaluation, "train s" = wall-clock of training until
then EXCLUDING evaluations, "cpu s" = this process's CPU time for the same span (steadier than
wall-clock on a shared machine). One untimed 1,500-step warm-up run per side comes first.

SAC on HalfCheetah-v5 (``--halfcheetah K``): rl-zoo's MuJoCo settings (SB3 defaults + learning_starts
10,000) on both sides; each side collects its 10,000 uniform-random steps untimed, then K more
steps (K gradient steps) are timed, sides interleaved per seed. Reported: wall and CPU seconds per
1,000 steps of that span (the issue's full 100k-step runs are this cost × 90 plus the warm-up).

    python benchmarks/off_policy.py                       # 3 seeds per side, DQN and SAC
    python benchmarks/off_policy.py --algos dqn --seeds 0 1 2
    python benchmarks/off_policy.py --algos --halfcheetah 3000 --seeds 0

The issue's full runs (``--halfcheetah-runs N``): N steps per run (100,000), final 10-episode
evaluation with the mean action, train wall and CPU seconds; one JSON line per run appended to
``--results FILE``. One side per process, one process per core, both started together so the
machine's load hits both (``--sides``), then ``--report FILE`` prints the table:

    python benchmarks/off_policy.py --algos --halfcheetah-runs 100000 --sides policylab --results hc.jsonl &
    python benchmarks/off_policy.py --algos --halfcheetah-runs 100000 --sides sb3 --results hc.jsonl
    python benchmarks/off_policy.py --report hc.jsonl
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _common import machine_info, markdown_table

TASKS = {  # algo → env, threshold, cap, eval_every, SB3 kwargs (policylab: the bundled preset)
    "dqn": ("CartPole-v1", 475.0, 60_000, 2048,
            {"learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000,
             "gamma": 0.99, "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128,
             "exploration_fraction": 0.16, "exploration_final_eps": 0.04,
             "policy_kwargs": {"net_arch": [256, 256]}}),
    "sac": ("Pendulum-v1", -200.0, 20_000, 1000, {"learning_rate": 1e-3}),
}


@dataclass
class Run:
    side: str
    seed: int
    steps: int | None = None   # env steps at the first solving evaluation (None: not solved)
    train_s: float = 0.0
    cpu_s: float = 0.0
    last_eval: float = float("nan")


def evaluate(act, env_id: str, seed: int, episodes: int = 10) -> float:
    venv = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * episodes)
    obs, _ = venv.reset(seed=10_000 + seed)
    ret, running = np.zeros(episodes), np.ones(episodes, bool)
    while running.any():
        obs, r, term, trunc, _ = venv.step(act(obs))
        ret += np.where(running, r, 0.0)
        running &= ~(term | trunc)
    venv.close()
    return float(ret.mean())


class Clock:
    """Training time = elapsed − evaluations; decides when to evaluate and when to stop."""

    def __init__(self, run: Run, env_id: str, threshold: float, every: int):
        self.run, self.env_id, self.threshold, self.every = run, env_id, threshold, every
        self.next_eval, self.eval_wall, self.eval_cpu = every, 0.0, 0.0
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def check(self, steps: int, act) -> bool:
        """False = stop (solved)."""
        if steps < self.next_eval:
            return True
        self.next_eval = (steps // self.every + 1) * self.every
        w, c = time.perf_counter(), time.process_time()
        self.run.last_eval = evaluate(act, self.env_id, self.run.seed)
        self.eval_wall += time.perf_counter() - w
        self.eval_cpu += time.process_time() - c
        self.run.train_s = time.perf_counter() - self.t0 - self.eval_wall
        self.run.cpu_s = time.process_time() - self.c0 - self.eval_cpu
        if self.run.last_eval >= self.threshold:
            self.run.steps = steps
            return False
        return True

    def finish(self) -> Run:
        """An unsolved run's time is the whole run (evaluations excluded)."""
        if self.run.steps is None:
            self.run.train_s = time.perf_counter() - self.t0 - self.eval_wall
            self.run.cpu_s = time.process_time() - self.c0 - self.eval_cpu
        return self.run


def run_policylab(algo: str, seed: int) -> Run:
    from policylab.deep.config import load_preset
    from policylab.deep.dqn import DQN
    from policylab.deep.sac import SAC

    env_id, threshold, cap, every, _ = TASKS[algo]
    run = Run("policylab", seed)
    clock = Clock(run, env_id, threshold, every)
    cls = DQN if algo == "dqn" else SAC
    agent = cls(env_id, seed=seed, config=load_preset(env_id, algo))
    agent.learn(cap, callback=lambda a, m: clock.check(a.num_steps, lambda o: a.act(o, deterministic=True)))
    return clock.finish()


def run_sb3(algo: str, seed: int) -> Run:
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import BaseCallback

    env_id, threshold, cap, every, kwargs = TASKS[algo]
    run = Run("sb3", seed)
    clock = Clock(run, env_id, threshold, every)

    class EvalAtIteration(BaseCallback):  # after each train() round, as policylab's callback
        def _on_rollout_start(self) -> None:
            self.go = clock.check(self.num_timesteps, lambda o: self.model.predict(o, deterministic=True)[0])

        def _on_step(self) -> bool:
            return getattr(self, "go", True)

    cls = sb3.DQN if algo == "dqn" else sb3.SAC
    model = cls("MlpPolicy", env_id, seed=seed, device="cpu", **kwargs)
    model.learn(cap, callback=EvalAtIteration())
    return clock.finish()


def halfcheetah_step_cost(side: str, seed: int, k: int) -> tuple[float, float]:
    """(wall s, cpu s) per 1,000 SAC steps on HalfCheetah-v5 after the 10k-step random warm-up."""
    start = 10_000
    if side == "policylab":
        from policylab.deep.config import load_preset
        from policylab.deep.sac import SAC

        agent = SAC("HalfCheetah-v5", seed=seed, config=load_preset("HalfCheetah-v5", "sac"))
        agent.learn(start)
        train = lambda: agent.learn(start + k)
    else:
        import stable_baselines3 as sb3

        model = sb3.SAC("MlpPolicy", "HalfCheetah-v5", seed=seed, device="cpu", learning_starts=start)
        model.learn(start)
        train = lambda: model.learn(k, reset_num_timesteps=False)
    w, c = time.perf_counter(), time.process_time()
    train()
    return (time.perf_counter() - w) * 1000 / k, (time.process_time() - c) * 1000 / k


def halfcheetah_table(seeds, k: int) -> None:
    rows = {"policylab": [], "sb3": []}
    for seed in seeds:
        for side in (["policylab", "sb3"] if seed % 2 == 0 else ["sb3", "policylab"]):
            rows[side].append(halfcheetah_step_cost(side, seed, k))
            print(f"  HalfCheetah {side} seed {seed}: {rows[side][-1][0]:.1f} s wall, {rows[side][-1][1]:.1f} s cpu "
                  "per 1k steps", flush=True)
    med = {side: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for side, v in rows.items()}
    print(f"\nSAC on HalfCheetah-v5: seconds per 1,000 steps after learning_starts (timed span {k:,} steps)\n")
    print(markdown_table(["side", "wall s / 1k steps", "cpu s / 1k steps"],
                         [[side, f"{m[0]:.1f}", f"{m[1]:.1f}"] for side, m in med.items()]
                         + [["ratio", f"{med['policylab'][0] / med['sb3'][0]:.2f}",
                             f"{med['policylab'][1] / med['sb3'][1]:.2f}"]]))


def halfcheetah_run(side: str, seed: int, steps: int) -> dict:
    """One full SAC run on HalfCheetah-v5 (rl-zoo settings both sides): train time, final return."""
    env_id = "HalfCheetah-v5"
    w, c = time.perf_counter(), time.process_time()
    if side == "policylab":
        from policylab.deep.config import load_preset
        from policylab.deep.sac import SAC

        agent = SAC(env_id, seed=seed, config=load_preset(env_id, "sac"))
        agent.learn(steps)
        act = lambda o: agent.act(o, deterministic=True)
    else:
        import stable_baselines3 as sb3

        model = sb3.SAC("MlpPolicy", env_id, seed=seed, device="cpu", learning_starts=10_000)
        model.learn(steps)
        act = lambda o: model.predict(o, deterministic=True)[0]
    train_s, cpu_s = time.perf_counter() - w, time.process_time() - c
    return {"side": side, "seed": seed, "steps": steps, "train_s": round(train_s, 1), "cpu_s": round(cpu_s, 1),
            "final_return": round(evaluate(act, env_id, seed), 1), "finished_at": time.strftime("%H:%M UTC", time.gmtime())}


def halfcheetah_report(path: str) -> None:
    import json

    runs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    rows, med = [], {}
    for side in ("policylab", "sb3"):
        mine = sorted((r for r in runs if r["side"] == side), key=lambda r: r["seed"])
        if not mine:
            continue
        med[side] = {k: statistics.median(r[k] for r in mine) for k in ("final_return", "train_s", "cpu_s")}
        rows.append([side, " / ".join(str(r["seed"]) for r in mine),
                     " / ".join(f"{r['final_return']:.0f}" for r in mine),
                     " / ".join(f"{r['train_s']:.0f}" for r in mine), " / ".join(f"{r['cpu_s']:.0f}" for r in mine),
                     f"{med[side]['final_return']:.0f}", f"{med[side]['train_s']:.0f}", f"{med[side]['cpu_s']:.0f}"])
    if len(med) == 2:
        rows.append(["ratio", "", "", "", "", f"{med['policylab']['final_return'] / med['sb3']['final_return']:.2f}",
                     f"{med['policylab']['train_s'] / med['sb3']['train_s']:.2f}",
                     f"{med['policylab']['cpu_s'] / med['sb3']['cpu_s']:.2f}"])
    steps = {r["steps"] for r in runs}
    print(f"\nSAC on HalfCheetah-v5, {'/'.join(f'{s:,}' for s in sorted(steps))} steps per run\n")
    print(markdown_table(["side", "seeds", "final return", "train s", "cpu s", "median return", "median train s",
                          "median cpu s"], rows))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", nargs="*", default=["dqn", "sac"], choices=list(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--max-steps", type=int, default=None, help="override every cap (a smoke run)")
    p.add_argument("--halfcheetah", type=int, default=0, metavar="K",
                   help="also time K SAC steps on HalfCheetah-v5 after learning_starts, per side and seed")
    p.add_argument("--halfcheetah-runs", type=int, default=0, metavar="N",
                   help="full N-step SAC runs on HalfCheetah-v5 per seed for --sides; JSON lines to --results")
    p.add_argument("--sides", nargs="+", default=["policylab", "sb3"], choices=["policylab", "sb3"])
    p.add_argument("--results", default="halfcheetah.jsonl", help="where --halfcheetah-runs appends its runs")
    p.add_argument("--report", metavar="FILE", help="print the table of a --results file and exit")
    args = p.parse_args(argv)
    if args.report:
        halfcheetah_report(args.report)
        return 0
    if args.max_steps:
        for k, (env_id, thr, _, every, kw) in list(TASKS.items()):
            TASKS[k] = (env_id, thr, args.max_steps, min(every, args.max_steps), kw)
    torch.set_num_threads(1)
    import stable_baselines3

    print(machine_info({"torch": torch.__version__, "stable-baselines3": stable_baselines3.__version__}))
    for algo in args.algos:
        env_id, threshold, cap, every, kw = TASKS[algo]
        TASKS[algo] = (env_id, threshold, 1500, 1500, kw)  # untimed warm-up (imports, first calls)
        run_policylab(algo, 99), run_sb3(algo, 99)
        TASKS[algo] = (env_id, threshold, cap, every, kw)
        runs: list[Run] = []
        for seed in args.seeds:
            sides = [run_policylab, run_sb3] if seed % 2 == 0 else [run_sb3, run_policylab]
            for side in sides:
                r = side(algo, seed)
                runs.append(r)
                print(f"  {algo} {r.side} seed {seed}: steps {r.steps} train {r.train_s:.1f}s cpu {r.cpu_s:.1f}s "
                      f"last eval {r.last_eval:.1f}", flush=True)
        env_id, threshold, cap = TASKS[algo][:3]
        print(f"\n{algo.upper()} on {env_id}: first eval ≥ {threshold:g} (cap {cap:,} steps)\n")
        rows, med = [], {}
        for side in ("policylab", "sb3"):
            mine = [r for r in runs if r.side == side]
            solved = [r for r in mine if r.steps is not None]
            med[side] = (statistics.median(r.train_s for r in mine), statistics.median(r.cpu_s for r in mine))
            rows.append([side, f"{len(solved)}/{len(mine)}",
                         " / ".join(str(r.steps) if r.steps else "—" for r in mine),
                         " / ".join(f"{r.train_s:.1f}" for r in mine), " / ".join(f"{r.cpu_s:.1f}" for r in mine),
                         f"{med[side][0]:.1f}", f"{med[side][1]:.1f}"])
        rows.append(["ratio", "", "", "", "", f"{med['policylab'][0] / med['sb3'][0]:.2f}",
                     f"{med['policylab'][1] / med['sb3'][1]:.2f}"])
        print(markdown_table(["side", "solved", "steps (per seed)", "train s", "cpu s", "median train s",
                              "median cpu s"], rows))
    if args.halfcheetah:
        halfcheetah_table(args.seeds, args.halfcheetah)
    if args.halfcheetah_runs:
        import json

        for seed in args.seeds:
            for side in args.sides:
                r = halfcheetah_run(side, seed, args.halfcheetah_runs)
                print(f"  HalfCheetah {side} seed {seed}: return {r['final_return']:.1f}, train {r['train_s']:.0f} s, "
                      f"cpu {r['cpu_s']:.0f} s", flush=True)
                with open(args.results, "a") as f:
                    f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
