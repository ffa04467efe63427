"""PPO on CartPole-v1: policylab vs Stable-Baselines3, wall-clock and env steps to solve.

Both sides use rl-baselines3-zoo's tuned CartPole-v1 hyperparameters (hyperparams/ppo.yml):
8 envs, n_steps 32, batch 256, 20 epochs, γ 0.98, GAE λ 0.8, ent_coef 0, learning rate and clip
range linearly annealed from 1e-3 and 0.2 to 0 over the run cap (--max-steps, rl-zoo's 1e5), SB3
defaults elsewhere (separate [64, 64] tanh actor and critic, orthogonal init, Adam ε 1e-5,
max_grad_norm 0.5, per-minibatch advantage normalization, value loss 0.5·MSE — SB3's vf_coef 0.5,
which is policylab's vf_coef 1.0 because policylab's value_loss already carries the ½).

Up to five sides, interleaved seed by seed in ONE process (the order rotates with the seed, so
machine load hits all alike), torch.set_num_threads(1) and OMP_NUM_THREADS=1 (single-threaded BLAS)
for all:

    sb3                   stable_baselines3.PPO on DummyVecEnv(8 × gymnasium CartPole-v1) (rl-zoo's setup)
    policylab             policylab.deep.PPO backend="torch" (autograd) on gymnasium SyncVectorEnv(8)
    policylab-fast        policylab.deep.PPO backend="torch" on policylab VectorCartPole(8)
    policylab-numpy       policylab.deep.PPO backend="numpy" (what the default "auto" picks) on SyncVectorEnv(8)
    policylab-fast-numpy  policylab.deep.PPO backend="numpy" on policylab VectorCartPole(8)

Evaluation is identical code for all: after each PPO update (iteration) that crosses a multiple of
--eval-every env steps, 10 episodes of a separate gymnasium CartPole-v1 (SyncVectorEnv of 10
copies, one episode each, reseeded identically for every side) with deterministic (greedy)
actions. A run solves at its first evaluation with mean return ≥ 475; it stops there or at
--max-steps.

Reported per run: "train s" = wall-clock from building the agent (env + networks) until that
evaluation, EXCLUDING evaluation time; "eval s" = the evaluation time, reported separately;
"steps" = env steps (summed over the 8 envs) when it solved; "steps/s" = steps / train s.
One short untimed warm-up run per side comes first (torch and numba first-call costs).

Where the time goes. backend="torch" (cProfile, VectorCartPole): the update (20 epochs × 1
full-batch minibatch of 256 per 256 env steps) is ~80% of the wall-clock, nearly all of it torch's
per-op dispatch and autograd bookkeeping on (256 × 64) tensors; SB3 spends the same (train() 74%).
backend="numpy" computes the same gradient with one numba kernel per layer and direction (BLAS
product + bias + activation in one pass) and one compiled Adam pass, so the update costs ~0.45 ms
per gradient step instead of ~1.5–2.5 ms; what remains is mostly the BLAS products themselves.

    python benchmarks/ppo_cartpole.py                 # 5 seeds, cap 100k steps
    python benchmarks/ppo_cartpole.py --quick         # 2 seeds, cap 50k: a smoke run
    python benchmarks/ppo_cartpole.py --seeds 0 1 2 --max-steps 60000
    python benchmarks/ppo_cartpole.py --process       # whole processes (issue 18), see below

``--process`` times whole processes instead (issue 18: start-up counts): ``policylab train ppo
--env CartPole-v1 --stop-at-return 475 --eval-every 5000`` against ``benchmarks/sb3_zoo_process.py``
(SB3 PPO as rl-zoo builds it, EvalCallback every 5000 env steps + StopTrainingOnRewardThreshold
475), both stopping at their first 10-episode deterministic evaluation ≥ 475 (policylab evaluates
after the PPO iteration that crosses each multiple of 5000 steps, SB3 at exactly every 625 vector
steps = 5000 env steps), one process per seed and side, sides interleaved (order alternates),
OMP_NUM_THREADS=1 and one torch thread on both. Wall time and the child's CPU time (user + system,
from RUSAGE_CHILDREN) are reported. Also timed as whole processes: ``policylab --help`` and
``policylab train ppo --env CartPole-v1 --steps 1000`` (warm cache: one untimed run first), with
``python -c pass`` as the interpreter's floor.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import gc
import json
import math
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

THRESHOLD = 475.0
EVAL_EPISODES = 10

# rl-baselines3-zoo hyperparams/ppo.yml, CartPole-v1 (n_timesteps 1e5; lin_0.001, lin_0.2).
ZOO = {
    "n_envs": 8,
    "n_steps": 32,
    "batch_size": 256,
    "n_epochs": 20,
    "gamma": 0.98,
    "gae_lambda": 0.8,
    "ent_coef": 0.0,
    "learning_rate": 1e-3,
    "clip_range": 0.2,
}


# ---------------------------------------------------------------- shared evaluation
class Evaluator:
    """Deterministic evaluation, the same code for every side: ``act(obs (10, 4)) -> (10,)``."""

    def __init__(self, episodes: int = EVAL_EPISODES):
        self.env = gym.make_vec("CartPole-v1", num_envs=episodes, vectorization_mode="sync")
        self.n = episodes

    def __call__(self, act, seed: int) -> float:
        obs, _ = self.env.reset(seed=seed)
        returns = np.zeros(self.n)
        running = np.ones(self.n, dtype=bool)
        while running.any():
            obs, r, term, trunc, _ = self.env.step(np.asarray(act(obs), dtype=np.int64))
            returns += np.where(running, r, 0.0)
            running &= ~(term | trunc)
        return float(returns.mean())


@dataclass
class Run:
    side: str
    seed: int
    solved: bool = False
    steps: int = 0  # env steps when solved (or at the cap)
    train_s: float = 0.0  # wall-clock excluding evaluation
    eval_s: float = 0.0
    evals: list = field(default_factory=list)  # (steps, mean return)

    @property
    def sps(self) -> float:
        return self.steps / self.train_s if self.train_s > 0 else float("nan")


class Clock:
    """Training wall-clock with evaluation time subtracted; decides when to evaluate and stop."""

    def __init__(self, run: Run, evaluator: Evaluator, eval_every: int, eval_seed: int):
        self.run, self.evaluator, self.eval_every, self.eval_seed = (
            run,
            evaluator,
            eval_every,
            eval_seed,
        )
        self.next_eval = eval_every
        self.t0 = time.perf_counter()

    def maybe_evaluate(self, steps: int, act) -> bool:
        """Called after each PPO update; returns True when solved (the caller stops)."""
        if steps < self.next_eval:
            return False
        t = time.perf_counter()
        self.run.train_s = t - self.t0 - self.run.eval_s
        self.run.steps = steps
        mean = self.evaluator(act, self.eval_seed)
        self.run.eval_s += time.perf_counter() - t
        self.run.evals.append((steps, mean))
        while self.next_eval <= steps:
            self.next_eval += self.eval_every
        self.run.solved = mean >= THRESHOLD
        return self.run.solved

    def finish(self, steps: int) -> None:
        if not self.run.solved:  # hit the cap: time and steps of the whole run
            self.run.train_s = time.perf_counter() - self.t0 - self.run.eval_s
            self.run.steps = steps


# ---------------------------------------------------------------- the sides
def run_sb3(
    seed: int, max_steps: int, evaluator: Evaluator, eval_every: int, eval_seed: int
) -> Run:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    run = Run("sb3", seed)
    clock = Clock(run, evaluator, eval_every, eval_seed)

    class EvalCallback(BaseCallback):
        # on_rollout_start runs after the previous update (SB3 has no post-train hook): the
        # policy evaluated is the same "after update k" policy as on the policylab side.
        def _on_rollout_start(self) -> None:
            self.solved = clock.maybe_evaluate(
                self.model.num_timesteps, lambda o: self.model.predict(o, deterministic=True)[0]
            )

        def _on_step(self) -> bool:
            return not getattr(self, "solved", False)

    env = make_vec_env("CartPole-v1", n_envs=ZOO["n_envs"], seed=seed)
    lr0, clip0 = ZOO["learning_rate"], ZOO["clip_range"]
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=ZOO["n_steps"],
        batch_size=ZOO["batch_size"],
        n_epochs=ZOO["n_epochs"],
        gamma=ZOO["gamma"],
        gae_lambda=ZOO["gae_lambda"],
        ent_coef=ZOO["ent_coef"],
        learning_rate=lambda p: lr0 * p,
        clip_range=lambda p: clip0 * p,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    cb = EvalCallback()
    model.learn(max_steps, callback=cb)
    if not run.solved:  # the last update's policy, if the cap was reached without solving
        clock.maybe_evaluate(
            max(model.num_timesteps, clock.next_eval),
            lambda o: model.predict(o, deterministic=True)[0],
        )
    clock.finish(model.num_timesteps)
    env.close()
    return run


def run_policylab(
    seed: int, max_steps: int, evaluator: Evaluator, eval_every: int, eval_seed: int, fast: bool,
    backend: str = "torch",
) -> Run:
    from policylab.deep import PPO
    from policylab.deep.vector_cartpole import VectorCartPole

    run = Run(("policylab-fast" if fast else "policylab") + ("-numpy" if backend == "numpy" else ""), seed)
    clock = Clock(run, evaluator, eval_every, eval_seed)
    env = VectorCartPole(ZOO["n_envs"], seed=seed) if fast else "CartPole-v1"
    # vf_coef=1.0: policylab's value_loss is ½·mean((V − R)²) while SB3 multiplies the plain MSE by
    # vf_coef=0.5, so 1.0 here gives SB3's exact objective  L = L_clip + 0.5·mean((V − R)²).
    agent = PPO(env, seed=seed, **ZOO, vf_coef=1.0, anneal_lr=True, anneal_clip=True, backend=backend)

    def act(obs):
        return agent.act(obs, deterministic=True)

    def callback(agent, metrics) -> bool:
        return not clock.maybe_evaluate(agent.num_steps, act)

    agent.learn(max_steps, callback=callback)
    if not run.solved:
        clock.maybe_evaluate(max(agent.num_steps, clock.next_eval), act)
    clock.finish(agent.num_steps)
    agent.env.close()
    return run


SIDES = {
    "sb3": (
        "Stable-Baselines3",
        "Gymnasium CartPole-v1 × 8 (SB3 DummyVecEnv)",
        lambda s, m, e, k, z: run_sb3(s, m, e, k, z),
    ),
    "policylab": (
        "policylab backend=torch",
        "Gymnasium SyncVectorEnv × 8",
        lambda s, m, e, k, z: run_policylab(s, m, e, k, z, fast=False),
    ),
    "policylab-fast": (
        "policylab backend=torch",
        "policylab VectorCartPole(8)",
        lambda s, m, e, k, z: run_policylab(s, m, e, k, z, fast=True),
    ),
    "policylab-numpy": (
        "policylab backend=numpy",
        "Gymnasium SyncVectorEnv × 8",
        lambda s, m, e, k, z: run_policylab(s, m, e, k, z, fast=False, backend="numpy"),
    ),
    "policylab-fast-numpy": (
        "policylab backend=numpy",
        "policylab VectorCartPole(8)",
        lambda s, m, e, k, z: run_policylab(s, m, e, k, z, fast=True, backend="numpy"),
    ),
}


# ---------------------------------------------------------------- report
def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def table(runs: dict[str, list[Run]]) -> str:
    sb3_med = _median([r.train_s for r in runs.get("sb3", []) if r.solved])
    lines = [
        "| side | env | median s to solve | median steps | solved seeds | steps/s | ratio vs SB3 (time) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, rs in runs.items():
        name, env, _ = SIDES[key]
        ok = [r for r in rs if r.solved]
        med = _median([r.train_s for r in ok])
        ratio = med / sb3_med if ok and not math.isnan(sb3_med) else float("nan")
        sps = _median([r.sps for r in rs])
        ratio_s = (
            f"{ratio:.3f} ({1 / ratio:.1f}× faster)"
            if key != "sb3" and not math.isnan(ratio)
            else ("1.000" if key == "sb3" else "n/a")
        )
        lines.append(
            f"| {name} | {env} | {med:.2f} | {_median([r.steps for r in ok]):,.0f} | "
            f"{len(ok)}/{len(rs)} | {sps:,.0f} | {ratio_s} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- whole processes
HERE = os.path.dirname(os.path.abspath(__file__))


def timed_process(cmd: list[str]) -> tuple[float, float, str]:
    """Run cmd to completion; (wall s, child CPU s = user + system, stdout). Raises on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def policylab_cmd() -> list[str]:
    """The ``policylab`` console script beside this interpreter (as a user runs it; not a
    pyenv shim, which adds its own start-up), else python -m policylab."""
    exe = os.path.join(os.path.dirname(sys.executable), "policylab")
    return [exe] if os.access(exe, os.X_OK) else [sys.executable, "-m", "policylab"]


def _last_step(run_dir: str) -> int:
    import csv

    with open(os.path.join(run_dir, "progress.csv")) as f:
        rows = list(csv.DictReader(f))
    return int(float(rows[-1]["global_step"]))


def process_runs(seeds, eval_every: int, log=print) -> dict:
    """Interleaved whole-process runs: policylab train --stop-at-return 475 vs SB3 zoo process;
    then the start-up commands. Returns {"solve": {side: [(seed, wall, cpu, steps)]},
    "startup": {name: [(wall, cpu)]}}."""
    pl = policylab_cmd()
    tmp = tempfile.mkdtemp(prefix="ppo-process-")
    solve = {"policylab": [], "sb3": []}

    def run(side, seed):
        if side == "policylab":
            out = os.path.join(tmp, f"ppo-s{seed}")
            wall, cpu, _ = timed_process(pl + ["train", "ppo", "--env", "CartPole-v1", "--stop-at-return",
                                               f"{THRESHOLD:g}", "--eval-every", str(eval_every),
                                               "--seed", str(seed), "--out", out, "--no-progress"])
            steps = _last_step(out)
        else:
            wall, cpu, stdout = timed_process([sys.executable, os.path.join(HERE, "sb3_zoo_process.py"),
                                               "--seed", str(seed), "--eval-freq", str(eval_every)])
            steps = json.loads(stdout.strip().splitlines()[-1])["steps"]
        solve[side].append((seed, wall, cpu, steps))
        log(f"process: {side} seed {seed}: {wall:.2f} s wall, {cpu:.2f} s CPU, {steps:,} steps")

    for i, seed in enumerate(seeds):
        for side in (("policylab", "sb3") if i % 2 == 0 else ("sb3", "policylab")):
            run(side, seed)
    startup = {"python -c pass": [sys.executable, "-c", "pass"], "policylab --help": pl + ["--help"],
               "policylab train ppo --env CartPole-v1 --steps 1000":
                   pl + ["train", "ppo", "--env", "CartPole-v1", "--steps", "1000", "--no-progress"]}
    times = {k: [] for k in startup}
    for name, cmd in startup.items():  # warm: one untimed run (numba and OS file caches)
        timed_process(cmd + (["--out", os.path.join(tmp, "warm")] if "train" in cmd else []))
    for r in range(5):
        for name, cmd in startup.items():
            extra = ["--out", os.path.join(tmp, f"short-{r}")] if "train" in cmd else []
            times[name].append(timed_process(cmd + extra)[:2])
    shutil.rmtree(tmp, ignore_errors=True)
    return {"solve": solve, "startup": times}


def process_table(res: dict) -> str:
    """Two Markdown tables: time to solve as whole processes; start-up commands."""
    med = statistics.median
    solve = res["solve"]
    sb3_wall, sb3_cpu = med([r[1] for r in solve["sb3"]]), med([r[2] for r in solve["sb3"]])
    lines = ["| side (whole process) | median wall s | median CPU s | median steps | per seed: wall s / steps | SB3 / side (wall) | SB3 / side (CPU) |",
             "|---|---:|---:|---:|---|---:|---:|"]
    names = {"policylab": "`policylab train ppo --env CartPole-v1 --stop-at-return 475 --eval-every 5000`",
             "sb3": "SB3 PPO, rl-zoo setup, EvalCallback + StopTrainingOnRewardThreshold(475)"}
    for side in ("policylab", "sb3"):
        rs = solve[side]
        wall, cpu = med([r[1] for r in rs]), med([r[2] for r in rs])
        per = ", ".join(f"{r[1]:.1f}/{r[3] // 1000}k" for r in rs)
        lines.append(f"| {names[side]} | {wall:.2f} | {cpu:.2f} | {med([r[3] for r in rs]):,.0f} | {per} | "
                     f"{sb3_wall / wall:.2f}× | {sb3_cpu / cpu:.2f}× |")
    lines += ["", "| command (whole process, warm) | min wall s | median wall s | median CPU s | target |",
              "|---|---:|---:|---:|---|"]
    targets = {"policylab --help": "≤ 0.3 s", "policylab train ppo --env CartPole-v1 --steps 1000": "≤ 3 s"}
    for name, ts in res["startup"].items():
        lines.append(f"| `{name}` | {min(t[0] for t in ts):.2f} | {med([t[0] for t in ts]):.2f} | "
                     f"{med([t[1] for t in ts]):.2f} | {targets.get(name, 'floor')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2 3 4)")
    p.add_argument(
        "--max-steps", type=int, default=None, help="env-step cap per run (default 100000)"
    )
    p.add_argument("--eval-every", type=int, default=5000, help="env steps between evaluations")
    p.add_argument("--sides", nargs="+", choices=list(SIDES), default=list(SIDES))
    p.add_argument("--quick", action="store_true", help="2 seeds, cap 50k steps (smoke run)")
    p.add_argument("--process", action="store_true",
                   help="whole processes: policylab train --stop-at-return vs SB3's zoo process, start-up")
    args = p.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else ([0, 1] if args.quick else [0, 1, 2, 3, 4])
    if args.process:
        import stable_baselines3

        load0 = os.getloadavg()
        res = process_runs(seeds, args.eval_every, log=lambda m: print(m, file=sys.stderr, flush=True))
        print(f"# whole processes, seeds {seeds}, interleaved; {platform.python_version()}, "
              f"SB3 {stable_baselines3.__version__}, torch {torch.__version__}, gymnasium {gym.__version__}; "
              f"{os.cpu_count()} cpus; load avg {load0[0]:.1f} → {os.getloadavg()[0]:.1f}; "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
        print(process_table(res))
        return 0
    max_steps = (
        args.max_steps if args.max_steps is not None else (50_000 if args.quick else 100_000)
    )
    if max_steps < args.eval_every or args.eval_every < 1:
        p.error("need 1 ≤ --eval-every ≤ --max-steps")
    torch.set_num_threads(1)

    import stable_baselines3

    evaluator = Evaluator()
    print(
        f"# PPO CartPole-v1: policylab vs Stable-Baselines3 {stable_baselines3.__version__} "
        f"(torch {torch.__version__}, gymnasium {gym.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, torch threads {torch.get_num_threads()})"
    )
    print(
        f"# seeds {seeds}, cap {max_steps:,} steps, eval every {args.eval_every:,} steps "
        f"({EVAL_EPISODES} deterministic episodes), solved = eval mean ≥ {THRESHOLD:g}"
    )
    for key in args.sides:  # untimed warm-up: first-call costs (torch kernels, numba cache load)
        SIDES[key][2](12345, 512, evaluator, 256, 0)

    runs: dict[str, list[Run]] = {k: [] for k in args.sides}
    print("\n| seed | side | solved | steps | train s | eval s | steps/s | evals (steps: mean) |")
    print("|---:|---|---|---:|---:|---:|---:|---|")
    for i, seed in enumerate(seeds):
        order = args.sides[i % len(args.sides) :] + args.sides[: i % len(args.sides)]
        for key in order:
            gc.collect()
            r = SIDES[key][2](seed, max_steps, evaluator, args.eval_every, 10_000 + seed)
            runs[key].append(r)
            evals = ", ".join(f"{s // 1000}k: {m:.0f}" for s, m in r.evals)
            print(
                f"| {seed} | {key} | {'yes' if r.solved else 'NO'} | {r.steps:,} | {r.train_s:.2f} | "
                f"{r.eval_s:.2f} | {r.sps:,.0f} | {evals} |",
                flush=True,
            )
    print()
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
