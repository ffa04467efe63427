"""`policylab learn`: tabular learning from interaction on a catalog MDP, compared with planning.

    policylab learn q-learning --mdp line-world --steps 1e5 --alpha 0.1 --epsilon 0.2
    policylab learn sarsa --mdp cliff-walking --steps 2e5 --alpha 0.5 --epsilon 0.1 --json
    policylab learn td0 --mdp frozen-lake --steps 1e6 --alpha 1/n --trace trace.csv

Control methods print the learned Q next to Q* from value iteration; td0 and mc evaluate the
ε-greedy policy w.r.t. Q* (ε = --epsilon) and print V next to its exact V^π.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import ClassVar

ALGORITHMS = ["q-learning", "sarsa", "expected-sarsa", "td0", "mc"]
MDPS = ("line-world", "frozen-lake", "frozen-lake-8x8", "cliff-walking", "taxi", "gridworld", "forest", "garnet")


@dataclass
class LearnConfig:
    """Settings of ``policylab learn`` (the algorithm is the positional argument)."""

    mdp: str = "line-world"  # catalog MDP
    steps: int = 100_000  # environment steps = updates (mc: number of episodes)
    alpha: str | None = None  # step size: a number in (0, 1], 1/n, inv:P[,S], linear:A,B,T, exp:A,B,D [@FLOOR]; default 0.1 (mc: 1/n, the sample mean)
    epsilon: str = "0.1"  # exploration ε in [0, 1] (or a schedule, as --alpha)
    gamma: float | None = None  # discount (default: the MDP's)
    seed: int = 0  # random seed of the shared SplitMix64 stream
    max_episode_steps: int | None = None  # truncate episodes there (truncation bootstraps)
    backend: str = "auto"  # numba kernel (compiled), plain Python loop, or auto (compiled when it applies)
    rows: int = 20  # states to print
    json: bool = False  # print one JSON object instead of a table
    trace: str | None = None  # write every update to this .csv or .npy file
    progress: bool = True  # show the progress bar

    RANGES: ClassVar[dict] = {"mdp": MDPS, "steps": "[1, 1e12]", "gamma": "[0, 1]",
                              "max_episode_steps": "[1, 2147483647]", "backend": ("auto", "compiled", "python")}

    def validate(self) -> None:
        from policylab.errors import ConfigError

        if self.trace is not None and not self.trace.endswith((".csv", ".npy")):
            raise ConfigError(f"--trace file must end in .csv or .npy, got {self.trace!r}")


def add_parser(subparsers) -> None:
    from policylab.cli import SUMMARY
    from policylab.config import add_config_arguments

    p = subparsers.add_parser("learn", help=SUMMARY["learn"], description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("algorithm", choices=ALGORITHMS)
    p.add_argument("--config", metavar="YAML", help="YAML file of LearnConfig fields (options below win)")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE",
                   help="set one field (repeatable)")
    add_config_arguments(p, LearnConfig, title="settings (LearnConfig fields)")
    p.set_defaults(func=run)


def run(args) -> int:
    from policylab.cli import UsageError, writable_file
    from policylab.config import config_from_args

    # --- every check before any work
    cfg = config_from_args(LearnConfig, args, args.config, args.assignments)
    if cfg.trace:
        writable_file(cfg.trace, "--trace")

    import numpy as np

    from policylab import planning, tabular
    from policylab.mdp import catalog
    from policylab.tabular.schedules import CONSTANT

    steps = cfg.steps
    try:
        alpha_text = cfg.alpha or ("1/n" if args.algorithm == "mc" else "0.1")
        alpha = tabular.as_schedule(tabular.parse_schedule(alpha_text), "--alpha", zero_ok=False)
        epsilon = tabular.as_schedule(tabular.parse_schedule(cfg.epsilon), "--epsilon", zero_ok=True)
    except ValueError as exc:
        raise UsageError(str(exc).replace("cannot parse", "--alpha/--epsilon: cannot parse")) from None
    args = argparse.Namespace(algorithm=args.algorithm, **vars(cfg))

    mdp = catalog.get(args.mdp, gamma=args.gamma)
    plan = planning.value_iteration(mdp, tol=1e-10)
    common = {"seed": args.seed, "max_episode_steps": args.max_episode_steps,
              "trace": bool(args.trace), "backend": args.backend, "progress": args.progress}
    control = args.algorithm in ("q-learning", "sarsa", "expected-sarsa")
    if control:
        learner = {"q-learning": tabular.q_learning, "sarsa": tabular.sarsa,
                   "expected-sarsa": tabular.expected_sarsa}[args.algorithm]
        res = learner(mdp, steps, alpha, epsilon, **common)
        learned, reference = res.Q, plan.Q  # (S, A)
        visited = res.visits > 0
    else:
        if epsilon.kind != CONSTANT:
            raise UsageError("td0/mc evaluate the ε-greedy policy of Q*: --epsilon must be a number")
        eps = epsilon(0)
        pi = np.full((mdp.n_states, mdp.n_actions), eps / mdp.n_actions)  # (S, A)
        pi[np.arange(mdp.n_states), plan.policy] += 1.0 - eps
        if args.algorithm == "td0":
            res = tabular.td0_prediction(mdp, pi, steps, alpha, **common)
        else:
            res = tabular.mc_prediction(mdp, pi, steps, alpha=alpha, **common)
        learned, reference = res.V, planning.evaluate_policy(mdp, pi, method="exact")  # (S,)
        visited = res.visits.sum(axis=1) > 0
    err = np.abs(learned - reference)
    max_err = float(err.max())
    max_err_visited = float(err[visited].max()) if visited.any() else float("nan")

    if args.trace:
        try:
            tabular.write_trace(args.trace, res.trace)
        except OSError as exc:
            raise UsageError(f"--trace {args.trace}: cannot write ({exc.strerror or exc})") from None
    names, actions = mdp.state_names, mdp.action_names
    last = res.episode_returns[-100:]
    summary = {
        "algorithm": args.algorithm, "mdp": args.mdp, "steps": res.steps, "backend": res.backend,
        "config": {k: v for k, v in res.config.items()},
        "episodes": len(res.episode_returns),
        "mean_return_last_100": float(last.mean()) if len(last) else None,
        "max_error": max_err, "max_error_visited": max_err_visited,
    }
    if args.json:
        if control:
            summary |= {"Q": res.Q.tolist(), "Q_star": plan.Q.tolist(),
                        "policy": res.policy.tolist(), "optimal_policy": plan.policy.tolist()}
        else:
            summary |= {"V": res.V.tolist(), "V_pi": reference.tolist()}
        summary |= {"state_names": list(names), "action_names": actions}
        print(json.dumps(summary))
        return 0

    out = sys.stdout
    print(f"{args.algorithm} on {args.mdp}: {res.steps} steps, {len(res.episode_returns)} episodes, "
          f"gamma={mdp.gamma:g}, alpha={alpha!r}, epsilon={epsilon!r}, backend={res.backend}", file=out)
    width = max([5] + [len(n) for n in names[: args.rows]])
    if control:
        head = "  ".join(f"{'Q(' + a + ')':>10} {'Q*':>8}" for a in actions)
        print(f"{'state':<{width}}  {head}  {'greedy':>8} {'pi*':>8}", file=out)
        for s in range(min(args.rows, mdp.n_states)):
            cells = "  ".join(f"{res.Q[s, a]:>10.4f} {plan.Q[s, a]:>8.4f}" for a in range(mdp.n_actions))
            print(f"{names[s]:<{width}}  {cells}  {actions[res.policy[s]]:>8} "
                  f"{actions[plan.policy[s]]:>8}", file=out)
        label = "max |Q - Q*|"
    else:
        print(f"{'state':<{width}}  {'V':>10} {'V^pi':>10} {'|err|':>9}", file=out)
        for s in range(min(args.rows, mdp.n_states)):
            print(f"{names[s]:<{width}}  {res.V[s]:>10.4f} {reference[s]:>10.4f} {err[s]:>9.2e}",
                  file=out)
        label = "max |V - V^pi|"
    if mdp.n_states > args.rows:
        print(f"... ({mdp.n_states - args.rows} more states; --rows N or --json for all)", file=out)
    print(f"{label} = {max_err:.4g} (all), {max_err_visited:.4g} (visited)", file=out)
    if summary["mean_return_last_100"] is not None:
        print(f"mean return of the last {len(last)} episodes: {summary['mean_return_last_100']:.4g}",
              file=out)
    if args.trace:
        print(f"trace: {len(res.trace)} updates -> {args.trace}", file=out)
    return 0

