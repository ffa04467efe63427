"""Stable-Baselines3 PPO on CartPole-v1 as rl-baselines3-zoo runs it, as one process that stops
at its first evaluation with mean return ≥ 475 (the peer of ``policylab train ppo --env
CartPole-v1 --stop-at-return 475`` in ``benchmarks/ppo_cartpole.py --process``).

What ``python -m rl_zoo3.train --algo ppo --env CartPole-v1 --eval-freq F --eval-episodes 10``
builds (rl-zoo's hyperparams/ppo.yml: 8 envs, n_steps 32, batch 256, 20 epochs, γ 0.98, λ 0.8,
ent_coef 0, lin_0.001 / lin_0.2 schedules over n_timesteps 1e5; a separate 1-env evaluation env,
``EvalCallback(eval_freq=max(F // n_envs, 1), deterministic=True)``), plus
``callback_on_new_best=StopTrainingOnRewardThreshold(475)``. rl_zoo3 itself is not imported (it is
not a dependency; its extra imports — optuna, huggingface_sb3, yaml parsing — would only add to
SB3's start-up), so this process is a lower bound on the zoo's own.

    python benchmarks/sb3_zoo_process.py --seed 0 --eval-freq 5000
prints one JSON line: {"steps": env steps when it stopped, "best": best mean eval return}.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-freq", type=int, default=5000, help="env steps between evaluations")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--threshold", type=float, default=475.0)
    p.add_argument("--n-timesteps", type=int, default=100_000)
    args = p.parse_args(argv)

    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    n_envs = 8
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=args.seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=args.seed + 10_000)

    def lin(v0):
        return lambda progress: progress * v0  # rl-zoo's lin_<v0>

    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98,
                gae_lambda=0.8, ent_coef=0.0, learning_rate=lin(1e-3), clip_range=lin(0.2),
                seed=args.seed, device="cpu", verbose=0)
    stop = StopTrainingOnRewardThreshold(reward_threshold=args.threshold, verbose=0)
    cb = EvalCallback(eval_env, callback_on_new_best=stop, n_eval_episodes=args.eval_episodes,
                      eval_freq=max(args.eval_freq // n_envs, 1), deterministic=True, verbose=0)
    model.learn(args.n_timesteps, callback=cb)
    print(json.dumps({"steps": int(model.num_timesteps), "best": float(cb.best_mean_reward)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
