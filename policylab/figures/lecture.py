"""The lecture's figures 1, 2, 4 and 6, each computed from library objects.

Every ``figN_data(...)`` is pure (no matplotlib) and returns the numbers the figure shows;
``figN(out_dir=None, ...)`` draws them and returns a :class:`FigureResult` whose ``data`` is
exactly what ``figN_data`` returned. Figures 3 and 5 (backup diagrams) live in ``backups.py``.
"""

from __future__ import annotations

import numpy as np

from policylab.errors import InputError
from policylab.figures import _draw as d

__all__ = ["fig1", "fig1_data", "fig2", "fig2_data", "fig4", "fig4_data", "fig6", "fig6_data"]


# ------------------------------------------------------------------ 1. agent–environment loop
def fig1_data(mdp=None, actions=None, seed: int = 0) -> dict:
    """One episode of ``mdp`` (default: the line world) stepped through ``mdp.to_env(seed)``,
    taking ``actions`` in turn (default: always the last action, "right" in the line world).

    Returns {"signals": names on the loop's arrows, "transitions": [(t, s_t, a_t, r_{t+1}, s_{t+1},
    terminated)] with state/action names}.
    """
    from policylab.mdp import catalog

    mdp = catalog.line_world() if mdp is None else mdp
    env = mdp.to_env(seed=seed, max_episode_steps=20)
    s, _ = env.reset(seed=seed)
    actions = [mdp.n_actions - 1] * 20 if actions is None else list(actions)
    rows = []
    for t, a in enumerate(actions):
        s2, r, term, trunc, _ = env.step(int(a))
        rows.append((t, mdp.state_names[s], mdp.action_names[a], float(r), mdp.state_names[s2], bool(term)))
        s = s2
        if term or trunc:
            break
    return {"signals": {"action": "a_t", "state": "s_{t+1}", "reward": "r_{t+1}"}, "transitions": rows}


def _elbow(ax, pts, label, label_xy, color="black", ha="center"):
    xs, ys = zip(*pts)
    ax.plot(xs[:-1], ys[:-1], color=color, lw=1.6, solid_capstyle="butt")
    ax.annotate("", xy=pts[-1], xytext=pts[-2],
                arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.6, "shrinkA": 0, "shrinkB": 0, "mutation_scale": 14})
    ax.text(*label_xy, label, ha=ha, va="center", fontsize=11, color=color)


def fig1(out_dir=None, **kw) -> d.FigureResult:
    """Figure 1: the agent–environment interaction loop, with a real line-world episode below."""
    from matplotlib.patches import FancyBboxPatch

    data = fig1_data(**kw)
    fig = d.new_figure(7.5, 4.6)
    ax = d.diagram_axes(fig, [0.02, 0.30, 0.96, 0.68], (0, 10), (0, 5.2))
    for (x, y, text) in [(3.5, 3.8, "Agent"), (3.5, 0.6, "Environment")]:
        ax.add_patch(FancyBboxPatch((x, y), 3.0, 0.9, boxstyle="round,pad=0.1", fc="#e8f0fe", ec="black", lw=1.4))
        ax.text(x + 1.5, y + 0.45, text, ha="center", va="center", fontsize=13, weight="bold")
    sig = data["signals"]
    _elbow(ax, [(6.6, 4.25), (8.6, 4.25), (8.6, 1.05), (6.6, 1.05)], f"action\n${sig['action']}$",
           (8.75, 2.65), color="#1f5fbf", ha="left")
    _elbow(ax, [(3.4, 0.85), (0.9, 0.85), (0.9, 4.4), (3.4, 4.4)], f"state\n${sig['state']}$",
           (0.75, 2.65), color="#2e7d32", ha="right")
    _elbow(ax, [(3.4, 1.25), (1.9, 1.25), (1.9, 4.05), (3.4, 4.05)], f"reward\n${sig['reward']}$",
           (2.05, 2.65), color="#b26a00", ha="left")
    ax.text(5.0, 2.65, "$t \\leftarrow t+1$", ha="center", va="center", fontsize=10, color="#555555")
    ax.set_xlim(-0.9, 10.6)
    # the same loop, run: a line-world episode from mdp.to_env()
    lines = ["one episode of catalog.line_world() through mdp.to_env() (always 'right'):"]
    for (t, s, a, r, s2, term) in data["transitions"]:
        lines.append(f"t={t}:  $s_t$={s},  $a_t$={a}  →  $r_{{t+1}}$={d.fmt(r)},  $s_{{t+1}}$={s2}"
                     + ("  (terminal)" if term else ""))
    fig.text(0.06, 0.27, "\n".join(lines), ha="left", va="top", fontsize=9, family="DejaVu Sans",
             linespacing=1.5)
    return d.finish(fig, "fig1_agent_environment_loop", "Figure 1: the agent–environment loop",
                    "At each step the agent sees s_t, picks a_t; the environment answers r_{t+1} and s_{t+1}.",
                    data, out_dir)


# ------------------------------------------------------------------ 2. an MDP as a state machine
def fig2_data(mdp=None) -> dict:
    """Edges of ``mdp`` (default ``catalog.forest(S=3)``) as a finite-state machine: every nonzero
    P(s'|s,a) of a non-terminal s, as {"edges": [(s, a, s', P(s'|s,a), R(s,a,s'))], names...}."""
    from policylab.mdp import catalog

    mdp = catalog.forest(S=3) if mdp is None else mdp
    if mdp.n_states * mdp.n_actions > 40:
        raise InputError(f"fig2 draws small MDPs (S·A <= 40), got S={mdp.n_states}, A={mdp.n_actions}")
    indptr, nxt, prob, rew = mdp.transitions()
    A = mdp.n_actions
    edges = []
    for s in range(mdp.n_states):
        if mdp.terminal[s]:
            continue
        for a in range(A):
            row = s * A + a
            for k in range(indptr[row], indptr[row + 1]):
                if prob[k] > 0:
                    edges.append((s, a, int(nxt[k]), float(prob[k]), float(rew[k])))
    return {"edges": edges, "state_names": list(mdp.state_names), "action_names": list(mdp.action_names),
            "terminal": [bool(t) for t in mdp.terminal], "gamma": float(mdp.gamma)}


def node_rewards(edges) -> dict:
    """{(s, a): r} for every action node whose reward R(s,a,s') is the same r for all successors
    s' (fig 2 writes it once at the node); pairs whose reward depends on s' are left out."""
    by_sa = {}
    for (s, a, _s2, _p, r) in edges:
        by_sa.setdefault((s, a), []).append(r)
    return {sa: rs[0] for sa, rs in by_sa.items() if all(r == rs[0] for r in rs)}


def _attach_angles(sources) -> list[float]:
    """Where incoming arrows meet a state: ``sources`` are (dx, up) of each edge's action node
    relative to the target state. Edges from above attach on the upper half, from below on the
    lower half, away from the action stems at ±90°; nearer sources meet the state farther from the
    stem, so arcs into one state neither share an arrowhead point nor cross near it."""
    angles = [0.0] * len(sources)
    for up in (True, False):
        for right in (True, False):
            idx = [i for i, (dx, u) in enumerate(sources) if u == up and (dx > 1e-9) == right]
            idx.sort(key=lambda i: abs(sources[i][0]))                 # nearest first
            lo, hi = (22.0, 68.0) if right else (158.0, 112.0)        # nearest at lo, farthest at hi
            for k, i in enumerate(idx):
                a = lo if len(idx) == 1 else lo + (hi - lo) * k / (len(idx) - 1)
                angles[i] = a if up else -a
    return angles


def _bezier(pts, t):
    """Point at parameter t of the cubic Bézier with control points ``pts``."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = pts
    u = 1 - t
    return (u ** 3 * x0 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t ** 3 * x3,
            u ** 3 * y0 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t ** 3 * y3)


def fig2(out_dir=None, mdp=None) -> d.FigureResult:
    """Figure 2: states (circles) on a row, action nodes (dots, one colour per action) above and
    below them, curved arrows from action nodes to successors labelled with P(s'|s,a). Each arrow
    meets its successor at its own point. A reward that does not depend on s' is written once at
    the action node (``wait · r=4``); one that does is written on each arrow."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MPath

    data = fig2_data(mdp)
    names, anames = data["state_names"], data["action_names"]
    S, A = len(names), len(anames)
    gap, reach, R = 4.2, 1.35, 0.42
    colors = ["#1f5fbf", "#2e7d32", "#8e24aa", "#b26a00", "#00838f", "#c62828"]
    pos = {s: (s * gap, 0.0) for s in range(S)}
    n_up = -(-A // 2)                       # actions 0, 2, 4, … above the state, 1, 3, … below
    apos, aup = {}, {}
    for s in range(S):
        for a in range(A):
            up, k = a % 2 == 0, a // 2
            n_side = n_up if up else A - n_up
            apos[s, a] = (pos[s][0] + (k - (n_side - 1) / 2) * 1.5, reach if up else -reach)
            aup[s, a] = up
    fig = d.new_figure(max(7.0, 2.2 * S + 1.5), 4.9)
    ax = d.diagram_axes(fig, [0.01, 0.09, 0.98, 0.82], (-2.0, (S - 1) * gap + 2.0), (-2.7, 2.7))
    for s in range(S):
        d.state(ax, pos[s], names[s], terminal=data["terminal"][s], r=R, fontsize=10)
    r_at_node = node_rewards(data["edges"])
    for (s, a), xy in apos.items():
        if data["terminal"][s]:
            continue
        c, up = colors[a % len(colors)], aup[s, a]
        d.action(ax, xy, r=0.11, color=c)
        d.link(ax, pos[s], xy, R, 0.11, arrow=False, color=c)
        r = r_at_node.get((s, a), 0.0)
        label = anames[a] + (f" · r={d.fmt(r)}" if r != 0 else "")
        ax.text(xy[0], xy[1] + (0.2 if up else -0.2), label, ha="center", va="bottom" if up else "top", fontsize=9,
                color="#a04000" if r != 0 else c, weight="bold" if r != 0 else "normal", zorder=7,
                bbox={"boxstyle": "round,pad=0.1", "fc": "#fff3e0" if r != 0 else "white", "ec": "none", "alpha": 0.95})
    # incoming arrows: one attachment point per arrow on the successor's circle
    attach = {}
    for s2 in range(S):
        inc = [i for i, e in enumerate(data["edges"]) if e[2] == s2]
        srcs = [(apos[e[0], e[1]][0] - pos[s2][0], aup[e[0], e[1]]) for e in (data["edges"][i] for i in inc)]
        for j, i in enumerate(inc):          # a self-loop goes round the side with fewer other arrows
            if data["edges"][i][0] == s2:
                others = [dx for k, (dx, u) in enumerate(srcs) if k != j and u == srcs[j][1] and abs(dx) > 1e-9]
                srcs[j] = (1e-6 if sum(dx < 0 for dx in others) > sum(dx > 0 for dx in others) else -1e-6,
                           srcs[j][1])
        attach.update(zip(inc, _attach_angles(srcs)))
    for i, (s, a, s2, p, r) in enumerate(data["edges"]):
        p0, up, c = apos[s, a], aup[s, a], colors[a % len(colors)]
        sg = 1.0 if up else -1.0
        th = np.radians(attach[i])
        p3 = (pos[s2][0] + (R + 0.02) * np.cos(th), pos[s2][1] + (R + 0.02) * np.sin(th))
        dx = p3[0] - p0[0]
        if s2 == s:                          # self-loop: out sideways, back in radially
            side = -1.0 if np.cos(th) < 0 else 1.0
            p1 = (p0[0] + side * 0.95, p0[1] + sg * 0.3)
            p2 = (p3[0] + 0.85 * np.cos(th), p3[1] + 0.85 * np.sin(th))
        else:                                # arch away from the state row, come in radially
            p1 = (p0[0] + np.sign(dx) * (0.4 + 0.3 * abs(dx)), p0[1] + sg * 0.12 * abs(dx))
            p2 = (p3[0] + (0.45 + 0.22 * abs(dx)) * np.cos(th), p3[1] + (0.45 + 0.22 * abs(dx)) * np.sin(th))
        pts = [p0, p1, p2, p3]
        path = MPath(pts, [MPath.MOVETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4])
        ax.add_patch(FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=11, lw=1.1, color=c, zorder=2))
        on_edge = (s, a) not in r_at_node and r != 0
        lx, ly = _bezier(pts, 0.5 if s2 == s else 0.17)
        ax.text(lx, ly, d.fmt(p) + (f", r={d.fmt(r)}" if on_edge else ""), fontsize=8.5, ha="center",
                va="center", zorder=6, color="#a04000" if on_edge else c, weight="bold" if on_edge else "normal",
                bbox={"boxstyle": "round,pad=0.1", "fc": "#fff3e0" if on_edge else "white", "ec": "none",
                      "alpha": 0.95})
    fig.suptitle(f"An MDP as a finite-state machine (γ = {d.fmt(data['gamma'])})", fontsize=12, y=0.97)
    legend = ("circles: states   dots: actions   numbers on arrows: P(s'|s,a)   "
              "orange: reward R (at the dot when it does not depend on s')")
    if any(data["terminal"]):
        legend += "   grey square: terminal"
    fig.text(0.5, 0.03, legend, ha="center", fontsize=9)
    return d.finish(fig, "fig2_mdp_state_machine", "Figure 2: an MDP as a finite-state machine",
                    "Every nonzero transition of the MDP, with its probability and reward.", data, out_dir)


# ------------------------------------------------------------------ 4. Q* of the line world vs γ
def fig4_data(gammas=(0.0, 0.5, 0.9, 0.99), n_states: int = 3) -> dict:
    """{γ: Q* (S, A)} of ``catalog.line_world(n_states, γ)`` from ``planning.value_iteration``."""
    from policylab import planning
    from policylab.mdp import catalog

    return {float(g): planning.value_iteration(catalog.line_world(n_states, gamma=g)).Q for g in gammas}


def _q_panel(ax, Q, state_names, action_names, vmax=1.0, highlight=None, fontsize=9, cmap="Blues", star=False):
    """Heatmap of Q (states × actions) drawn as actions (rows) × states (columns) with numbers;
    ``star`` marks the greedy action of every state whose actions are not all tied."""
    M = np.asarray(Q).T  # (A, S)
    ax.imshow(M, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto")
    for a in range(M.shape[0]):
        for s in range(M.shape[1]):
            v = M[a, s]
            greedy = star and M[:, s].max() > M[:, s].min() and v == M[:, s].max()
            ax.text(s, a, d.fmt(v, 4) + ("\n★" if greedy else ""), ha="center", va="center",
                    fontsize=fontsize, color="white" if v > 0.6 * vmax else "black",
                    weight="bold" if greedy else "normal")
    ax.set_xticks(range(M.shape[1]), state_names, fontsize=fontsize)
    ax.set_yticks(range(M.shape[0]), action_names, fontsize=fontsize)
    ax.tick_params(length=0)
    if highlight is not None:
        from matplotlib.patches import Rectangle

        s, a = highlight
        ax.add_patch(Rectangle((s - 0.5, a - 0.5), 1, 1, fill=False, ec=d.HIGHLIGHT, lw=2.5))


def fig4(out_dir=None, gammas=(0.0, 0.5, 0.9, 0.99), n_states: int = 3) -> d.FigureResult:
    """Figure 4: Q*(s, a) of the line world, one heatmap per γ, greedy action marked with ★."""
    from policylab.mdp import catalog

    data = fig4_data(gammas, n_states)
    mdp = catalog.line_world(n_states)
    k = len(data)
    fig = d.new_figure(3.4 * k + 0.6, 3.4)
    axes = fig.subplots(1, k, squeeze=False)[0]
    for ax, (g, Q) in zip(axes, data.items()):
        _q_panel(ax, Q, mdp.state_names, mdp.action_names, star=True)
        ax.set_title(f"γ = {d.fmt(g)}", fontsize=11)
    fig.suptitle("Line world: Q*(s, a) from planning.value_iteration    ★ greedy action   (G: terminal goal)", fontsize=11)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.12, top=0.78, wspace=0.35)
    return d.finish(fig, "fig4_line_world_q_star", "Figure 4: the line world's Q* for several γ",
                    "Q*(s_i, right) = γ^(n−i): small γ makes the agent myopic (γ = 0 values only the "
                    "last step), γ near 1 far-sighted.", data, out_dir)


# ------------------------------------------------------------------ 6. Q-learning, update by update
def fig6_data(steps: int = 24, alpha: float = 0.5, epsilon: float = 0.5, seed: int = 0, gamma: float = 0.9,
              n_states: int = 3, panels: int = 12) -> dict:
    """``tabular.q_learning`` on the line world with ``trace=True``; the Q table after each update
    rebuilt from the trace (Q₀ = 0, then Q[s_t, a_t] ← q_after). {"trace", "tables" (steps+1, S, A),
    "Q_final", "shown": the first ``panels`` updates that change Q (δ ≠ 0), "unchanged": the updates
    with q_after = q_before, …}."""
    from policylab import tabular
    from policylab.mdp import catalog

    mdp = catalog.line_world(n_states, gamma=gamma)
    res = tabular.q_learning(mdp, steps=steps, alpha=alpha, epsilon=epsilon, seed=seed, trace=True)
    tr = res.trace
    tables = np.zeros((len(tr) + 1, mdp.n_states, mdp.n_actions))
    for i, row in enumerate(tr):
        tables[i + 1] = tables[i]
        tables[i + 1, row["s"], row["a"]] = row["q_after"]
    moved = [i for i, row in enumerate(tr) if row["q_after"] != row["q_before"]]
    return {"trace": tr, "tables": tables, "Q_final": res.Q, "state_names": list(mdp.state_names),
            "action_names": list(mdp.action_names), "alpha": alpha, "epsilon": epsilon, "gamma": gamma,
            "seed": seed, "shown": moved[:panels],
            "unchanged": [i for i, row in enumerate(tr) if row["q_after"] == row["q_before"]]}


def _ranges(ts) -> str:
    """[0, 1, 2, 4, 6, 7] → '0–2, 4, 6–7'."""
    out, i = [], 0
    while i < len(ts):
        j = i
        while j + 1 < len(ts) and ts[j + 1] == ts[j] + 1:
            j += 1
        out.append(f"{ts[i]}" if i == j else f"{ts[i]}–{ts[j]}")
        i = j + 1
    return ", ".join(out)


def fig6(out_dir=None, **kw) -> d.FigureResult:
    """Figure 6: one small Q table per update that changes Q (the updated cell boxed in red, its TD
    error in the title); updates with δ = 0 are counted in the next panel's title, not drawn."""
    data = fig6_data(**kw)
    tr, tables, names, an = data["trace"], data["tables"], data["state_names"], data["action_names"]
    shown = data["shown"]
    n = max(len(shown), 1)
    cols = min(4, n)
    rows = -(-n // cols)
    fig = d.new_figure(3.1 * cols, 2.0 * rows + 1.2)
    axes = fig.subplots(rows, cols, squeeze=False)
    nt = len(names) - 1  # drop the terminal G column (always 0)
    prev = -1
    for i in range(rows * cols):
        ax = axes.flat[i]
        if i >= len(shown):
            ax.axis("off")
            continue
        k = shown[i]
        row = tr[k]
        _q_panel(ax, tables[k + 1][:nt], names[:nt], an, highlight=(row["s"], row["a"]), fontsize=8, cmap="Greens")
        skipped = k - prev - 1
        prev = k
        ax.set_title((f"(+{skipped} update{'s' if skipped > 1 else ''} with δ=0)\n" if skipped else "\n")
                     + f"t={row['t']}: {names[row['s']]} —{an[row['a']]}→ {names[row['s_next']]}, r={d.fmt(row['r'])}\n"
                     f"δ={d.fmt(row['td_error'])}:  {d.fmt(row['q_before'])} → {d.fmt(row['q_after'])}",
                     fontsize=8)
    unchanged = [int(tr[i]["t"]) for i in data["unchanged"] if not shown or i < shown[-1]]
    fig.suptitle(f"Q-learning on the line world, update by update (α={d.fmt(data['alpha'])}, "
                 f"ε={d.fmt(data['epsilon'])}, γ={d.fmt(data['gamma'])}, seed={data['seed']}); red: updated cell",
                 fontsize=10)
    if unchanged:
        fig.text(0.5, 0.012, f"Not drawn: the {len(unchanged)} updates with δ = 0 (t = {_ranges(unchanged)}), "
                 "whose target r + γ max Q(s′,·) equals Q(s,a), so Q stays as it was.",
                 ha="center", fontsize=8.5, color="#444444")
    h = 2.0 * rows + 1.2
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.6 / h, top=1 - 1.0 / h, wspace=0.35, hspace=1.1)
    return d.finish(fig, "fig6_q_learning_updates", "Figure 6: Q-learning updates on the line world",
                    "Q(s,a) ← Q(s,a) + α[r + γ max_a' Q(s',a') − Q(s,a)], one panel per update that moves Q, "
                    "from tabular.q_learning's trace.", data, out_dir)
