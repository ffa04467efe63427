"""PPO on MuJoCo (Hopper-v5, HalfCheetah-v5): policylab vs Stable-Baselines3, final return and wall-clock.

Both sides use rl-baselines3-zoo's tuned PPO hyperparameters for Hopper-v4 / HalfCheetah-v4
(hyperparams/ppo.yml; ``ZOO`` below, in SB3's names) with ``normalize: true`` — SB3's VecNormalize
(observations and rewards, clip 10, γ of the algorithm) — and the policy_kwargs rl-zoo gives
(separate 256-256 ReLU actor and critic, log σ₀ = −2, no orthogonal init). policylab reads the same
values from its bundled presets (``policylab/presets/<env>.yaml``; the script checks the
translation: policylab's vf_coef is 2× SB3's because its value loss carries a ½).

Every run is its own single-threaded process (OMP_NUM_THREADS=1, torch.set_num_threads(1)); --procs
run at once (default: one per core), half of them policylab runs and half SB3 runs (each side works
through its own queue of env × seed), so the two sides share the machine and load hits both alike.

Each run trains in chunks of --eval-every env steps; after each chunk (untimed) it runs 10
deterministic episodes of a fresh env with the training normalization statistics frozen (policylab:
``agent.evaluate``; SB3: ``model.predict`` on ``VecNormalize.normalize_obs``), which gives the
learning curve (``<out>/<env>/<side>-s<seed>/progress.csv``, column ``eval/mean_return``, for
``policylab plot``). Reported per run: the final evaluation mean, the training wall-clock (without
evaluations) and env steps/s; per env and side: the IQM of the final means with a 95% stratified
bootstrap interval (``policylab.figures.stats``), and policylab's time / SB3's time.

    python benchmarks/ppo_mujoco.py                                  # 1M steps, seeds 0 1 2 (hours)
    python benchmarks/ppo_mujoco.py --steps 100000 --seeds 0 1       # a shortened run
    python benchmarks/ppo_mujoco.py --envs Hopper-v5 --steps 20000 --seeds 0 --eval-every 10240

Runs already finished in --out (``result.json``) are reused, so an interrupted benchmark continues.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_POLICY = {"log_std_init": -2.0, "ortho_init": False, "net_arch": {"pi": [256, 256], "vf": [256, 256]}}
# rl-baselines3-zoo hyperparams/ppo.yml (SB3 names), n_envs 1, normalize: true, n_timesteps 1e6
ZOO = {
    "Hopper-v5": {"batch_size": 32, "n_steps": 512, "gamma": 0.999, "learning_rate": 9.80828e-05,
                  "ent_coef": 0.00229519, "clip_range": 0.2, "n_epochs": 5, "gae_lambda": 0.99,
                  "max_grad_norm": 0.7, "vf_coef": 0.835671},
    "HalfCheetah-v5": {"batch_size": 64, "n_steps": 512, "gamma": 0.98, "learning_rate": 2.0633e-05,
                       "ent_coef": 0.000401762, "clip_range": 0.1, "n_epochs": 20, "gae_lambda": 0.92,
                       "max_grad_norm": 0.8, "vf_coef": 0.58096},
}
PUBLISHED = {"Hopper-v5": "2,410 ± 10 (Hopper-v3)", "HalfCheetah-v5": "5,819 ± 664 (HalfCheetah-v3)"}
EVAL_EPISODES = 10


# ---------------------------------------------------------------- one run (a worker process)
def _policylab_run(env_id: str, seed: int, steps: int, eval_every: int):
    from policylab.deep import PPO
    from policylab.deep.config import load_preset

    preset = load_preset(env_id, "ppo")
    zoo = ZOO[env_id]
    for k, v in zoo.items():  # the preset is rl-zoo's values in policylab's names
        assert abs(preset[k] - (2 * v if k == "vf_coef" else v)) < 1e-9 * max(1.0, abs(v)), (k, preset[k], v)
    agent = PPO(env_id, seed=seed, **preset)

    def train_to(target):
        agent.learn(target)
        return agent.num_steps

    return train_to, lambda: agent.evaluate(EVAL_EPISODES, seed=10_000 + seed).mean


def _sb3_run(env_id: str, seed: int, steps: int, eval_every: int):
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    torch.set_num_threads(1)
    zoo = ZOO[env_id]
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(env_id)]), gamma=zoo["gamma"])
    model = SB3PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0,
                   policy_kwargs=dict(_POLICY, activation_fn=torch.nn.ReLU), **zoo)

    def train_to(target):
        model.learn(target - model.num_timesteps, reset_num_timesteps=False)
        return model.num_timesteps

    def evaluate():
        eval_env = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * EVAL_EPISODES)
        obs, _ = eval_env.reset(seed=10_000 + seed)
        ret, running = np.zeros(EVAL_EPISODES), np.ones(EVAL_EPISODES, dtype=bool)
        while running.any():
            act, _ = model.predict(venv.normalize_obs(obs), deterministic=True)  # frozen statistics
            obs, r, term, trunc, _ = eval_env.step(act)
            ret += np.where(running, r, 0.0)
            running &= ~(term | trunc)
        eval_env.close()
        return float(ret.mean())

    return train_to, evaluate


def worker(side: str, env_id: str, seed: int, steps: int, eval_every: int, out: Path) -> dict:
    """Train one side on one env and seed; write progress.csv and result.json into ``out``."""
    import gymnasium  # noqa: F401  (imports are not part of the timed run)
    import torch

    if side == "policylab":
        import policylab.deep.ppo  # noqa: F401
    else:
        import stable_baselines3  # noqa: F401
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train_to, evaluate = (_policylab_run if side == "policylab" else _sb3_run)(env_id, seed, steps, eval_every)
    train_s, done, rows = time.perf_counter() - t0, 0, []
    while done < steps:
        t = time.perf_counter()
        done = train_to(min(done + eval_every, steps))
        train_s += time.perf_counter() - t
        rows.append((done, evaluate(), train_s))
    with (out / "progress.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["global_step", "eval/mean_return", "time/train_s"])
        w.writerows(rows)
    res = {"side": side, "env": env_id, "seed": seed, "steps": done, "final": rows[-1][1],
           "train_s": train_s, "sps": done / train_s}
    (out / "result.json").write_text(json.dumps(res))
    return res


# ---------------------------------------------------------------- the driver
def _versions() -> str:
    import gymnasium
    import mujoco
    import stable_baselines3
    import torch

    return (f"policylab (this tree), stable-baselines3 {stable_baselines3.__version__}, torch {torch.__version__}, "
            f"gymnasium {gymnasium.__version__}, mujoco {mujoco.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", nargs="+", default=list(ZOO), choices=list(ZOO))
    ap.add_argument("--steps", type=float, default=1e6, help="env steps per run (default 1e6, rl-zoo's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--eval-every", type=int, default=51_200, help="env steps between evaluations")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 2, help="runs at once (default: cores)")
    ap.add_argument("--out", default="runs/bench_ppo_mujoco")
    ap.add_argument("--worker", nargs=3, metavar=("SIDE", "ENV", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    steps = int(args.steps)
    if args.worker:
        side, env_id, seed = args.worker
        print(json.dumps(worker(side, env_id, int(seed), steps, args.eval_every,
                                Path(args.out) / env_id / f"{side}-s{seed}")))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine_info, markdown_table

    from policylab.figures.stats import iqm, stratified_bootstrap_ci

    # one queue per side, half of the slots each: a policylab run and an SB3 run share the machine
    queues = {side: [(side, env_id, seed) for env_id in args.envs for seed in args.seeds]
              for side in ("policylab", "sb3")}
    per_side = max(1, args.procs // 2)
    results, running = [], []
    t0 = time.perf_counter()
    while any(queues.values()) or running:
        for side, queue in queues.items():
            while queue and sum(s == side for s, _ in running) < per_side:
                _, env_id, seed = queue.pop(0)
                done = Path(args.out) / env_id / f"{side}-s{seed}" / "result.json"
                if done.is_file():  # a finished run of an interrupted benchmark is kept
                    results.append(json.loads(done.read_text()))
                    continue
                cmd = [sys.executable, __file__, "--worker", side, env_id, str(seed), "--steps", str(steps),
                       "--eval-every", str(args.eval_every), "--out", args.out]
                running.append((side, subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)))
        time.sleep(0.5)
        for side, p in [(s, p) for s, p in running if p.poll() is not None]:
            running.remove((side, p))
            out = p.stdout.read().strip().splitlines()
            if p.returncode != 0 or not out:
                raise SystemExit(f"a worker failed (exit {p.returncode}): {p.args}")
            results.append(json.loads(out[-1]))
            r = results[-1]
            print(f"  {r['env']} {r['side']} seed {r['seed']}: final {r['final']:.1f}, "
                  f"{r['train_s']:.0f} s, {r['sps']:.0f} steps/s", flush=True)

    print(f"\n{machine_info()}; {_versions()}; {steps:,} steps, seeds {args.seeds}, "
          f"{args.procs} runs at once; total {time.perf_counter() - t0:.0f} s\n")
    rows = []
    for env_id in args.envs:
        by = {s: sorted((r for r in results if r["env"] == env_id and r["side"] == s), key=lambda r: r["seed"])
              for s in ("policylab", "sb3")}
        cells = {}
        for s, rs in by.items():
            finals = np.array([r["final"] for r in rs])
            point, lo, hi = stratified_bootstrap_ci(finals, iqm, reps=2000)
            cells[s] = (f"{float(point):.0f} [{float(lo):.0f}, {float(hi):.0f}]",
                        " / ".join(f"{f:.0f}" for f in finals),
                        float(np.median([r["train_s"] for r in rs])), float(np.median([r["sps"] for r in rs])))
        ratio = cells["policylab"][2] / cells["sb3"][2]
        for s in ("policylab", "sb3"):
            iq, per_seed, secs, sps = cells[s]
            rows.append([env_id, s, iq, per_seed, f"{secs:.0f}", f"{sps:.0f}",
                         f"{ratio:.2f}" if s == "policylab" else "", PUBLISHED[env_id] if s == "sb3" else ""])
    print(markdown_table(["env", "side", "final IQM [95% CI]", "per seed", "train s (median)", "steps/s",
                          "time ratio policylab/SB3", "rl-zoo published (1M)"], rows))


if __name__ == "__main__":
    main()
