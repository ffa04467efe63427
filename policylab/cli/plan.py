"""`policylab plan`: solve a catalog MDP with value or policy iteration; print V*, Q*, π*."""

from __future__ import annotations

import json
import sys

from policylab.config import number

# = policylab.mdp.catalog.NAMES (a test keeps them equal); listed here so that parsing and --help do
# not import the catalog (scipy).
MDPS = ("line-world", "gridworld", "forest", "frozen-lake", "frozen-lake-8x8", "cliff-walking", "taxi", "garnet")


def add_parser(sub) -> None:
    from policylab.cli import SUMMARY

    p = sub.add_parser("plan", help=SUMMARY["plan"],
                       description="Solve a catalog MDP and print V*, Q* and the greedy policy π*.")
    p.add_argument("--mdp", default="line-world", choices=MDPS, help="catalog MDP (default line-world)")
    p.add_argument("--gamma", type=number(float, "[0, 1]"), default=None,
                   help="discount factor (default: the MDP's)")
    p.add_argument("--method", choices=["vi", "pi", "mpi"], default="vi",
                   help="vi = value iteration, pi = policy iteration, mpi = modified PI")
    p.add_argument("--tol", type=number(float, "(0, inf)"), default=1e-8,
                   help="bound on ||V - V*||_inf for vi and mpi (default 1e-8)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="write machine-readable output to FILE (or stdout if no FILE)")
    p.add_argument("--max-rows", type=number(int, "[0, 2147483647]"), default=100,
                   help="print at most this many states (default 100)")
    p.set_defaults(func=run)


def run(args) -> int:
    from policylab.cli import UsageError, writable_file

    if args.json not in (None, "-"):
        writable_file(args.json, "--json")

    from policylab import planning
    from policylab.mdp import catalog

    mdp = catalog.get(args.mdp, gamma=args.gamma)
    if args.method == "vi":
        res = planning.value_iteration(mdp, tol=args.tol)
    elif args.method == "pi":
        res = planning.policy_iteration(mdp)
    else:
        res = planning.modified_policy_iteration(mdp, tol=args.tol)
    if args.json is not None:
        out = {
            "mdp": args.mdp, "gamma": mdp.gamma, "method": res.method,
            "iterations": res.iterations, "residual": res.residual, "converged": res.converged,
            "states": list(mdp.state_names), "actions": mdp.action_names,
            "V": res.V.tolist(), "Q": res.Q.tolist(),
            "policy": [mdp.action_names[a] for a in res.policy],
        }
        text = json.dumps(out, indent=2)
        if args.json == "-":
            print(text)
        else:
            try:
                with open(args.json, "w") as f:
                    f.write(text + "\n")
            except OSError as exc:
                raise UsageError(f"--json {args.json}: cannot write ({exc.strerror or exc})") from None
            print(f"wrote {args.json}", file=sys.stderr)
        if args.json == "-":
            return 0
    print(format_solution(mdp, res, args.mdp, max_rows=args.max_rows))
    return 0


def format_solution(mdp, res, name: str, max_rows: int = 100) -> str:
    """A plain-text table: state, V*, Q*(s, a) for each action, π*(s)."""
    acts = mdp.action_names
    head = ["state", "V*"] + [f"Q*({a})" for a in acts] + ["pi*"]
    rows = []
    for s in range(min(mdp.n_states, max_rows)):
        term = mdp.terminal[s]
        rows.append([mdp.state_names[s], f"{res.V[s]:.4f}"] + [f"{q:.4f}" for q in res.Q[s]]
                    + ["(terminal)" if term else acts[res.policy[s]]])
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    title = (f"{name}: S={mdp.n_states}, A={mdp.n_actions}, gamma={mdp.gamma:g}; {res.method} "
             f"{'converged' if res.converged else 'did NOT converge'} in {res.iterations} iterations "
             f"(residual {res.residual:.2e})")
    out = [title, line(head), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    if mdp.n_states > max_rows:
        out.append(f"... {mdp.n_states - max_rows} more states (use --max-rows or --json)")
    return "\n".join(out)
