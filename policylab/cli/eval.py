"""``policylab eval runs/NAME --episodes 20``: evaluate a saved policylab.deep agent.

The checkpoint is verified first (hashes, schema, finite weights); any problem is one line, exit 2.
"""

from __future__ import annotations

MAX_EPISODES = 10_000   # one env per episode, run in parallel


def add_parser(subparsers) -> None:
    from policylab.config import number

    p = subparsers.add_parser("eval", help="evaluate a trained agent (a run directory)")
    p.add_argument("run", help="run directory written by `policylab train` (or agent.save)")
    p.add_argument("--episodes", type=number(int, f"[1, {MAX_EPISODES}]"), default=20,
                   help="number of episodes, one env each (default 20)")
    p.add_argument("--seed", type=int, default=None, help="evaluation seed (default: run seed + 10000)")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    p.set_defaults(func=run)


def run(args) -> int:
    import math
    from pathlib import Path

    from policylab.cli import UsageError
    from policylab.errors import DataError

    # --episodes in [1, 10000] and --seed in [0, 2147483647] were checked while parsing
    if not (Path(args.run) / "checkpoint.json").is_file() and not Path(args.run).is_file():
        raise UsageError(f"no checkpoint in {args.run} (expected {args.run}/checkpoint.json)")

    from policylab.deep import load_agent  # imports torch

    agent = load_agent(args.run)
    stats = agent.evaluate(args.episodes, deterministic=not args.stochastic, seed=args.seed)
    if not math.isfinite(stats.mean):
        raise DataError(f"evaluation of {args.run} on {agent.env_id} gave non-finite returns")
    mode = "stochastic" if args.stochastic else "deterministic"
    print(f"{agent.algo} on {agent.env_id}, {agent.num_steps:,} training steps, {args.episodes} {mode} episodes")
    print(f"return: mean {stats.mean:.2f} ± {stats.std:.2f} (min {min(stats.returns):.1f}, "
          f"max {max(stats.returns):.1f}); mean length {sum(stats.lengths) / len(stats.lengths):.1f}")
    return 0
