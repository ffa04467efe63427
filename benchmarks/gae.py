"""GAE: ``policylab.returns.gae`` vs Stable-Baselines3's ``RolloutBuffer.compute_returns_and_advantage``.

Same (T, N) float32 rollout on both sides (episode ends at random rows, termination only, since
SB3 folds truncation into the reward); checks the advantages agree, then times each call
(best of interleaved runs, CPU seconds of this process). Sizes: rl-zoo CartPole PPO (T=32,
N=8), the PPO paper's MuJoCo batch (T=2048, N=1) and a larger Atari-like one (T=128, N=64).

    python benchmarks/gae.py [--repeat 200]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import best_of_interleaved, machine_info, markdown_table


def _sb3_buffer(T, N, gamma, lam):
    import gymnasium as gym
    from stable_baselines3.common.buffers import RolloutBuffer

    space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    return RolloutBuffer(T, space, gym.spaces.Discrete(2), device="cpu", gae_lambda=lam, gamma=gamma,
                         n_envs=N)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    import torch

    from policylab.returns import gae

    torch.set_num_threads(1)
    gamma, lam = 0.99, 0.95
    rows = []
    for T, N in [(32, 8), (2048, 1), (128, 64)]:
        rng = np.random.default_rng(0)
        r = rng.normal(size=(T, N)).astype(np.float32)
        v = rng.normal(size=(T, N)).astype(np.float32)
        last_v = rng.normal(size=N).astype(np.float32)
        term = rng.random((T, N)) < 0.02  # row t ends an episode
        buf = _sb3_buffer(T, N, gamma, lam)
        buf.rewards[:], buf.values[:] = r, v
        buf.episode_starts[:] = 0.0
        buf.episode_starts[1:] = term[:-1]  # SB3: episode_starts[t+1] marks the end of row t
        last_t, last_done = torch.from_numpy(last_v), term[-1]

        def ours(r=r, v=v, last_v=last_v, term=term):
            return gae(r, gamma, v, last_v, lam, terminated=term)

        def sb3(buf=buf, last_t=last_t, last_done=last_done):
            buf.compute_returns_and_advantage(last_t, last_done)
            return buf.advantages

        best = best_of_interleaved({"policylab": ours, "sb3": sb3}, args.repeat)
        diff = float(np.abs(best["policylab"].result - best["sb3"].result).max())
        if diff > 1e-4:
            raise SystemExit(f"advantages disagree at T={T}, N={N}: max |Δ| = {diff}")
        us = {k: b.cpu * 1e6 for k, b in best.items()}
        rows.append([f"{T}×{N}", f"{us['policylab']:.0f}", f"{us['sb3']:.0f}",
                     f"{us['sb3'] / us['policylab']:.2f}×", f"{diff:.1e}"])
    print(markdown_table(["T×N", "policylab gae (µs)", "SB3 compute_returns_and_advantage (µs)",
                          "speed-up", "max |ΔÂ|"], rows))
    print(f"\nbest of {args.repeat} interleaved runs, CPU time of this process; {machine_info()}")


if __name__ == "__main__":
    main()
