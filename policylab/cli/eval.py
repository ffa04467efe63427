"""``policylab eval runs/NAME --episodes 20``: evaluate a saved policylab.deep agent."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a trained agent (a run directory)")
    p.add_argument("run", help="run directory written by `policylab train` (or agent.save)")
    p.add_argument("--episodes", type=int, default=20, help="number of episodes (default 20)")
    p.add_argument("--seed", type=int, default=None, help="evaluation seed (default: run seed + 10000)")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from policylab.cli import UsageError

    if args.episodes < 1:
        raise UsageError(f"--episodes must be ≥ 1, got {args.episodes}")
    if not (Path(args.run) / "checkpoint.json").is_file() and not Path(args.run).is_file():
        raise UsageError(f"no checkpoint in {args.run} (expected {args.run}/checkpoint.json)")

    from policylab.deep import load_agent  # imports torch

    agent = load_agent(args.run)
    stats = agent.evaluate(args.episodes, deterministic=not args.stochastic, seed=args.seed)
    mode = "stochastic" if args.stochastic else "deterministic"
    print(f"{agent.algo} on {agent.env_id}, {agent.num_steps:,} training steps, {args.episodes} {mode} episodes")
    print(f"return: mean {stats.mean:.2f} ± {stats.std:.2f} (min {min(stats.returns):.1f}, "
          f"max {max(stats.returns):.1f}); mean length {sum(stats.lengths) / len(stats.lengths):.1f}")
    return 0
