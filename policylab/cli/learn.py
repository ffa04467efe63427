"""`policylab learn`: tabular learning from interaction on a catalog MDP, compared with planning.

    policylab learn q-learning --mdp line-world --steps 1e5 --alpha 0.1 --epsilon 0.2
    policylab learn sarsa --mdp cliff-walking --steps 2e5 --alpha 0.5 --epsilon 0.1 --json
    policylab learn td0 --mdp frozen-lake --steps 1e6 --alpha 1/n --trace trace.csv
    policylab learn q-learning --mdp frozen-lake --steps 1e6 --seeds 0-31 --out runs/ql

--seeds runs many seeds in one compiled call (in parallel over cores; each seed's numbers equal a
run with --seed that seed) and prints one row per seed; --out writes <out>/<algorithm>-s<seed>/
progress.csv (one row per episode: global_step, charts/episodic_return, charts/episodic_length;
`policylab plot <out>/*` draws the curves) and result.json, plus <out>/summary.json.

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
    seeds: str | None = None  # run these seeds in one call, in parallel: "0-31" or "0,4,7" (replaces --seed)
    out: str | None = None  # folder for per-seed results: <out>/<algorithm>-s<seed>/{progress.csv,result.json}, summary.json

    RANGES: ClassVar[dict] = {"mdp": MDPS, "steps": "[1, 1e12]", "gamma": "[0, 1]",
                              "max_episode_steps": "[1, 2147483647]", "backend": ("auto", "compiled", "python")}

    def validate(self) -> None:
        from policylab.errors import ConfigError

        if self.trace is not None and not self.trace.endswith((".csv", ".npy")):
            raise ConfigError(f"--trace file must end in .csv or .npy, got {self.trace!r}")
        if self.seeds is not None:
            parse_seeds(self.seeds)
            if self.trace is not None:
                raise ConfigError("--trace records one run: use --seed, not --seeds")
            if self.seed != 0:
                raise ConfigError("pass --seed or --seeds, not both")


MAX_SEEDS = 4096


def parse_seeds(text: str) -> list[int]:
    """"0-31" → [0, …, 31]; "0,4,7" → [0, 4, 7] (parts may mix); ConfigError naming --seeds."""
    from policylab.errors import ConfigError

    seeds = []
    try:
        for part in str(text).replace(" ", "").split(","):
            lo, _, hi = part.partition("-")
            seeds += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        seeds = []
    if not seeds or len(seeds) > MAX_SEEDS or len(set(seeds)) != len(seeds) \
            or not all(0 <= x < 2**63 for x in seeds):
        raise ConfigError(f"--seeds must list 1 to {MAX_SEEDS} distinct seeds >= 0 as 0-31 or "
                          f"0,4,7, got {text!r}")
    return seeds


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

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if args.out is not None:
        from policylab.cli import writable_dir

        writable_dir(args.out)
    mdp = catalog.get(args.mdp, gamma=args.gamma)
    plan = planning.value_iteration(mdp, tol=1e-10)
    common = {"max_episode_steps": args.max_episode_steps, "trace": bool(args.trace),
              "backend": args.backend, "progress": args.progress}
    common |= {"seeds": seeds} if seeds is not None else {"seed": args.seed}
    control = args.algorithm in ("q-learning", "sarsa", "expected-sarsa")
    if control:
        learner = {"q-learning": tabular.q_learning, "sarsa": tabular.sarsa,
                   "expected-sarsa": tabular.expected_sarsa}[args.algorithm]
        results = learner(mdp, steps, alpha, epsilon, **common)
        reference = plan.Q  # (S, A)
    else:
        if epsilon.kind != CONSTANT:
            raise UsageError("td0/mc evaluate the ε-greedy policy of Q*: --epsilon must be a number")
        eps = epsilon(0)
        pi = np.full((mdp.n_states, mdp.n_actions), eps / mdp.n_actions)  # (S, A)
        pi[np.arange(mdp.n_states), plan.policy] += 1.0 - eps
        if args.algorithm == "td0":
            results = tabular.td0_prediction(mdp, pi, steps, alpha, **common)
        else:
            results = tabular.mc_prediction(mdp, pi, steps, alpha=alpha, **common)
        reference = planning.evaluate_policy(mdp, pi, method="exact")  # (S,)
    results = results if seeds is not None else [results]
    summaries = [_summary(args, res, reference, control) for res in results]
    res, summary = results[0], summaries[0]

    if args.trace:
        try:
            tabular.write_trace(args.trace, res.trace)
        except OSError as exc:
            raise UsageError(f"--trace {args.trace}: cannot write ({exc.strerror or exc})") from None
    if args.out is not None:
        _write_runs(args.out, args.algorithm, results, summaries, mdp, plan, reference, control)
    names, actions = mdp.state_names, mdp.action_names
    if args.json:
        full = []
        for res, summary in zip(results, summaries):
            if control:
                summary = summary | {"Q": res.Q.tolist(), "Q_star": plan.Q.tolist(),
                                     "policy": res.policy.tolist(),
                                     "optimal_policy": plan.policy.tolist()}
            else:
                summary = summary | {"V": res.V.tolist(), "V_pi": reference.tolist()}
            full.append(summary | {"state_names": list(names), "action_names": actions})
        print(json.dumps(full[0] if seeds is None else {"algorithm": args.algorithm,
                                                         "mdp": args.mdp, "runs": full}))
        return 0

    out = sys.stdout
    if seeds is not None:
        _print_seeds(args, mdp, summaries, alpha, epsilon, control, out)
        return 0
    err = np.abs((res.Q if control else res.V) - reference)
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
    print(f"{label} = {summary['max_error']:.4g} (all), {summary['max_error_visited']:.4g} (visited)",
          file=out)
    if summary["mean_return_last_100"] is not None:
        n_last = min(100, len(res.episode_returns))
        print(f"mean return of the last {n_last} episodes: {summary['mean_return_last_100']:.4g}",
              file=out)
    if args.trace:
        print(f"trace: {len(res.trace)} updates -> {args.trace}", file=out)
    if args.out is not None:
        print(f"results -> {args.out}", file=out)
    return 0


def _summary(args, res, reference, control: bool) -> dict:
    """One run's JSON summary: sizes, config, mean return of the last 100 episodes, and the
    largest error against the planning reference (all states, visited states)."""
    import numpy as np

    err = np.abs((res.Q if control else res.V) - reference)
    visited = res.visits > 0 if control else res.visits.sum(axis=1) > 0
    last = res.episode_returns[-100:]
    return {"algorithm": args.algorithm, "mdp": args.mdp, "steps": res.steps,
            "backend": res.backend, "config": dict(res.config),
            "episodes": len(res.episode_returns),
            "mean_return_last_100": float(last.mean()) if len(last) else None,
            "max_error": float(err.max()),
            "max_error_visited": float(err[visited].max()) if visited.any() else float("nan")}


def _print_seeds(args, mdp, summaries, alpha, epsilon, control, out) -> None:
    """One row per seed, then the mean over seeds."""
    import numpy as np

    label = "max |Q - Q*|" if control else "max |V - V^pi|"
    unit = "episodes" if args.algorithm == "mc" else "steps"
    print(f"{args.algorithm} on {args.mdp}: {len(summaries)} seeds x {args.steps} {unit}, "
          f"gamma={mdp.gamma:g}, alpha={alpha!r}, epsilon={epsilon!r}, "
          f"backend={summaries[0]['backend']}", file=out)
    print(f"{'seed':>6} {'episodes':>9} {'return(last 100)':>17} {label:>15} {'(visited)':>10}",
          file=out)
    for m in summaries:
        ret = m["mean_return_last_100"]
        print(f"{m['config']['seed']:>6} {m['episodes']:>9} "
              f"{'-' if ret is None else f'{ret:.4g}':>17} {m['max_error']:>15.4g} "
              f"{m['max_error_visited']:>10.4g}", file=out)
    rets = [m["mean_return_last_100"] for m in summaries if m["mean_return_last_100"] is not None]
    errs = np.array([m["max_error"] for m in summaries])
    print(f"{'mean':>6} {'':>9} {np.mean(rets) if rets else float('nan'):>17.4g} "
          f"{errs.mean():>15.4g}", file=out)
    if args.out is not None:
        print(f"results -> {args.out}", file=out)


def _write_runs(out, algorithm, results, summaries, mdp, plan, reference, control) -> None:
    """<out>/<algorithm>-s<seed>/progress.csv (per episode) and result.json; <out>/summary.json."""
    from pathlib import Path

    import numpy as np

    from policylab.io.lock import RunLock

    out = Path(out)
    with RunLock(out):
        for res, summary in zip(results, summaries):
            run = out / f"{algorithm}-s{summary['config']['seed']}"
            run.mkdir(exist_ok=True)
            steps = np.cumsum(res.episode_lengths)  # global step at each episode's end
            rows = np.column_stack([steps, res.episode_returns, res.episode_lengths,
                                    np.arange(1, len(steps) + 1)])  # (episodes, 4)
            np.savetxt(run / "progress.csv", rows, fmt=["%d", "%.17g", "%d", "%d"], delimiter=",",
                       header="global_step,charts/episodic_return,charts/episodic_length,episode",
                       comments="")
            table = {"Q": res.Q.tolist(), "Q_star": plan.Q.tolist(), "policy": res.policy.tolist()} \
                if control else {"V": res.V.tolist(), "V_pi": reference.tolist()}
            (run / "result.json").write_text(json.dumps(summary | table | {
                "visits": res.visits.tolist(), "state_names": list(mdp.state_names),
                "action_names": mdp.action_names}))
        (out / "summary.json").write_text(json.dumps({"runs": summaries}, indent=1))
