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


def fig2(out_dir=None, mdp=None) -> d.FigureResult:
    """Figure 2: states (circles) on a row, action nodes (dots) above and below them, arrows from
    action nodes to successors labelled with P(s'|s,a) and, in orange, the reward R(s,a,s') ≠ 0."""
    from matplotlib.patches import FancyArrowPatch

    data = fig2_data(mdp)
    names, anames, S, A = data["state_names"], data["action_names"], len(data["state_names"]), len(data["action_names"])
    gap, reach = 4.2, 1.35
    pos = {s: (s * gap, 0.0) for s in range(S)}
    angles = [90 + 180 * k for k in range(A)] if A <= 2 else [90 + 360 * k / A for k in range(A)]
    apos = {}
    for s in range(S):
        for a in range(A):
            th = np.radians(angles[a])
            apos[s, a] = (pos[s][0] + 0.9 * np.cos(th) + (0.55 if A <= 2 else 0.0), pos[s][1] + reach * np.sin(th))
    fig = d.new_figure(max(7.0, 2.1 * S + 1.5), 5.6)
    ax = d.diagram_axes(fig, [0.01, 0.08, 0.98, 0.84], (-1.4, (S - 1) * gap + 1.9), (-3.3, 3.3))
    patches = {s: d.state(ax, pos[s], names[s], terminal=data["terminal"][s], r=0.42, fontsize=10) for s in range(S)}
    apatch = {}
    for (s, a), xy in apos.items():
        if data["terminal"][s]:
            continue
        apatch[s, a] = d.action(ax, xy, r=0.11)
        d.link(ax, pos[s], xy, 0.42, 0.11, arrow=False, label=anames[a], side=-1 if xy[1] > 0 else 1,
               offset=0.16, fontsize=9, label_at=0.55, color="#333333", box=True)
    for (s, a, s2, p, r) in data["edges"]:
        p0, p1 = apos[s, a], pos[s2]
        up = p0[1] > 0
        rad = (-0.2 if s2 > s else 0.5) * (1 if up else -1)  # back edges arc wide
        if s2 == s:
            rad = 0.6 * (1 if up else -1)
        arrow = FancyArrowPatch(p0, p1, patchA=apatch[s, a], patchB=patches[s2], arrowstyle="-|>",
                                mutation_scale=11, connectionstyle=f"arc3,rad={rad}", lw=1.1, color="black",
                                zorder=2)
        ax.add_patch(arrow)
        # label on the arc3 Bézier (control point C = mid + rad·(dy, −dx)), near the action node
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        c = ((p0[0] + p1[0]) / 2 + rad * dy, (p0[1] + p1[1]) / 2 - rad * dx)
        t = 0.5 if s2 == s else 0.3
        lx, ly = ((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * c[0] + t * t * p1[0],
                  (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * c[1] + t * t * p1[1])
        text = d.fmt(p) + (f"\nr={d.fmt(r)}" if r != 0 else "")
        ax.text(lx, ly, text, fontsize=8.5, ha="center", va="center", zorder=6, linespacing=1.1,
                color="#a04000" if r != 0 else "black", weight="bold" if r != 0 else "normal",
                bbox={"boxstyle": "round,pad=0.12", "fc": "#fff3e0" if r != 0 else "white", "ec": "none", "alpha": 0.92})
    fig.suptitle(f"An MDP as a finite-state machine (γ = {d.fmt(data['gamma'])})", fontsize=12, y=0.97)
    legend = "circles: states   dots: actions   numbers: P(s'|s,a)   orange: P(s'|s,a) and reward R(s,a,s') ≠ 0"
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
def fig6_data(steps: int = 12, alpha: float = 0.5, epsilon: float = 0.5, seed: int = 0, gamma: float = 0.9,
              n_states: int = 3) -> dict:
    """``tabular.q_learning`` on the line world with ``trace=True``; the Q table after each update
    rebuilt from the trace (Q₀ = 0, then Q[s_t, a_t] ← q_after). {"trace", "tables" (steps+1, S, A),
    "Q_final", "state_names", "action_names"}."""
    from policylab import tabular
    from policylab.mdp import catalog

    mdp = catalog.line_world(n_states, gamma=gamma)
    res = tabular.q_learning(mdp, steps=steps, alpha=alpha, epsilon=epsilon, seed=seed, trace=True)
    tr = res.trace
    tables = np.zeros((len(tr) + 1, mdp.n_states, mdp.n_actions))
    for i, row in enumerate(tr):
        tables[i + 1] = tables[i]
        tables[i + 1, row["s"], row["a"]] = row["q_after"]
    return {"trace": tr, "tables": tables, "Q_final": res.Q, "state_names": list(mdp.state_names),
            "action_names": list(mdp.action_names), "alpha": alpha, "epsilon": epsilon, "gamma": gamma,
            "seed": seed}


def fig6(out_dir=None, **kw) -> d.FigureResult:
    """Figure 6: one small Q table per update; the updated cell boxed in red, its TD error in the title."""
    data = fig6_data(**kw)
    tr, tables, names, an = data["trace"], data["tables"], data["state_names"], data["action_names"]
    n = len(tr)
    cols = min(4, n)
    rows = -(-n // cols)
    fig = d.new_figure(3.1 * cols, 1.85 * rows + 0.9)
    axes = fig.subplots(rows, cols, squeeze=False)
    nt = len(names) - 1  # drop the terminal G column (always 0)
    for i in range(rows * cols):
        ax = axes.flat[i]
        if i >= n:
            ax.axis("off")
            continue
        row = tr[i]
        _q_panel(ax, tables[i + 1][:nt], names[:nt], an, highlight=(row["s"], row["a"]), fontsize=8, cmap="Greens")
        s2 = names[row["s_next"]]
        ax.set_title(f"t={row['t']}: {names[row['s']]} —{an[row['a']]}→ {s2}, r={d.fmt(row['r'])}\n"
                     f"δ={d.fmt(row['td_error'])}:  {d.fmt(row['q_before'])} → {d.fmt(row['q_after'])}",
                     fontsize=8)
    fig.suptitle(f"Q-learning on the line world, update by update (α={d.fmt(data['alpha'])}, "
                 f"ε={d.fmt(data['epsilon'])}, γ={d.fmt(data['gamma'])}, seed={data['seed']}); red: updated cell",
                 fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.06, top=1 - 0.75 / (1.85 * rows + 0.9), wspace=0.35,
                        hspace=0.9)
    return d.finish(fig, "fig6_q_learning_updates", "Figure 6: Q-learning updates on the line world",
                    "Q(s,a) ← Q(s,a) + α[r + γ max_a' Q(s',a') − Q(s,a)], one panel per update, from "
                    "tabular.q_learning's trace.", data, out_dir)
