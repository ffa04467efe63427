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

ALGORITHMS = ["q-learning", "sarsa", "expected-sarsa", "td0", "mc"]
MDPS = ["line-world", "frozen-lake", "frozen-lake-8x8", "cliff-walking", "taxi", "gridworld",
        "forest", "garnet"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "learn", help="tabular RL (Q-learning, SARSA, TD(0), MC) on a catalog MDP vs planning",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("algorithm", choices=ALGORITHMS)
    p.add_argument("--mdp", default="line-world", choices=MDPS, help="catalog MDP (default line-world)")
    p.add_argument("--steps", default="1e5",
                   help="environment steps = updates (mc: number of episodes); default 1e5")
    p.add_argument("--alpha", default=None,
                   help="step size: a number in (0, 1], 1/n, inv:P[,S], linear:A,B,T, exp:A,B,D "
                        "[@FLOOR]; default 0.1 (mc: 1/n, the sample mean)")
    p.add_argument("--epsilon", default="0.1", help="exploration ε in [0, 1] (or a schedule, as --alpha)")
    p.add_argument("--gamma", type=float, default=None, help="discount (default: the MDP's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-episode-steps", type=int, default=None, help="truncate episodes (bootstraps)")
    p.add_argument("--backend", default="auto", choices=["auto", "compiled", "python"])
    p.add_argument("--rows", type=int, default=20, help="states to print (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--trace", metavar="FILE", help="write every update to FILE (.csv or .npy)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from policylab import planning, tabular
    from policylab.cli import UsageError, parse_count
    from policylab.mdp import catalog
    from policylab.tabular.schedules import CONSTANT

    # --- every check before any work
    steps = parse_count(args.steps)
    try:
        alpha_text = args.alpha or ("1/n" if args.algorithm == "mc" else "0.1")
        alpha = tabular.as_schedule(tabular.parse_schedule(alpha_text), "--alpha", zero_ok=False)
        epsilon = tabular.as_schedule(tabular.parse_schedule(args.epsilon), "--epsilon", zero_ok=True)
    except ValueError as exc:
        raise UsageError(str(exc).replace("cannot parse", "--alpha/--epsilon: cannot parse")) from None
    if args.gamma is not None and not 0.0 <= args.gamma <= 1.0:
        raise UsageError(f"--gamma must be in [0, 1], got {args.gamma}")
    if args.max_episode_steps is not None and args.max_episode_steps <= 0:
        raise UsageError(f"--max-episode-steps must be > 0, got {args.max_episode_steps}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.rows < 0:
        raise UsageError(f"--rows must be >= 0, got {args.rows}")
    if args.trace:
        from policylab.tabular.result import check_trace_path

        try:
            check_trace_path(args.trace)
        except ValueError as exc:
            raise UsageError(f"--trace: {exc}") from None

    mdp = catalog.get(args.mdp, gamma=args.gamma)
    plan = planning.value_iteration(mdp, tol=1e-10)
    common = {"seed": args.seed, "max_episode_steps": args.max_episode_steps,
              "trace": bool(args.trace), "backend": args.backend, "progress": not args.no_progress}
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
        tabular.write_trace(args.trace, res.trace)
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
        summary |= {"state_names": names, "action_names": actions}
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

