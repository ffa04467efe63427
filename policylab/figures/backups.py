"""Backup diagrams (Sutton & Barto style): figure 3 (planning: Bellman expectation backup for V^π,
optimality backups for V* and Q*) and figure 5 (learning: Monte Carlo, TD(0), dynamic programming).

Open circles are states, filled dots actions, the grey square a terminal state, an arc a max.
Every number on a diagram is computed by ``planning`` (values) or sampled from the MDP's env.
"""

from __future__ import annotations

import numpy as np

from policylab.figures import _draw as d

__all__ = ["backup_tree", "fig3", "fig3_data", "fig5", "fig5_data"]


def backup_tree(mdp, s: int) -> list[tuple[int, list[tuple[int, float, float]]]]:
    """One-step lookahead tree of state s: [(a, [(s', P(s'|s,a), R(s,a,s')) for P > 0])]."""
    indptr, nxt, prob, rew = mdp.transitions()
    A = mdp.n_actions
    return [(a, [(int(nxt[k]), float(prob[k]), float(rew[k]))
                 for k in range(indptr[s * A + a], indptr[s * A + a + 1]) if prob[k] > 0]) for a in range(A)]


def _backup(tree, gamma, leaf_value, action_weight=None) -> tuple[np.ndarray, float]:
    """q(a) = Σ_s' P(s'|s,a)[r + γ v(s')] per action of ``tree``; and Σ_a w(a) q(a) (or max_a q(a))."""
    q = np.array([sum(p * (r + gamma * leaf_value[s2]) for s2, p, r in succ) for _, succ in tree])  # (A,)
    return q, float(q.max() if action_weight is None else np.dot(action_weight, q))


# ------------------------------------------------------------------ 3. planning backups
def fig3_data(mdp=None, state: int = 1, action: int = 0) -> dict:
    """Planning backups at ``state`` (and (state, action) for Q*) of ``mdp`` (default
    ``catalog.forest(S=3)``), with π uniform random. Values from ``planning``; each backup is
    recomputed from the drawn tree:

        V^π(s) = Σ_a π(a|s) Σ_s' P(s'|s,a)[r + γ V^π(s')]        ("v_pi_backup")
        V*(s)  = max_a Σ_s' P(s'|s,a)[r + γ V*(s')]              ("v_star_backup")
        Q*(s,a) = Σ_s' P(s'|s,a)[r + γ max_a' Q*(s',a')]         ("q_star_backup")
    """
    from policylab import planning
    from policylab.mdp import catalog

    mdp = catalog.forest(S=3) if mdp is None else mdp
    pi = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    v_pi = planning.evaluate_policy(mdp, pi)
    opt = planning.value_iteration(mdp)
    tree = backup_tree(mdp, state)
    q_pi, v_pi_b = _backup(tree, mdp.gamma, v_pi, pi[state])
    q_star_row, v_star_b = _backup(tree, mdp.gamma, opt.V)
    q_star_b = float(q_star_row[action])
    return {"state": state, "action": action, "tree": tree, "policy": pi, "gamma": float(mdp.gamma),
            "state_names": list(mdp.state_names), "action_names": list(mdp.action_names),
            "V_pi": v_pi, "Q_pi_row": q_pi, "V_star": opt.V, "Q_star": opt.Q,
            "v_pi_backup": v_pi_b, "v_star_backup": v_star_b, "q_star_backup": q_star_b}


def _layout(n, y, x0=0.0, width=4.0):
    """n evenly spaced x positions over ``width`` centred at x0, at height y."""
    if n == 1:
        return [(x0, y)]
    return [(x0 - width / 2 + width * i / (n - 1), y) for i in range(n)]


def _state_tree(ax, data, values, weights, q_labels, top=0.0, maxarc=False):
    """Root state → action dots → successor states; returns the root position."""
    names, an, tree = data["state_names"], data["action_names"], data["tree"]
    root = (0.0, top)
    d.state(ax, root, names[data["state"]])
    ax.text(root[0] + 0.38, root[1], values[0], fontsize=8.5, va="center", ha="left", color="#1f5fbf")
    apos = _layout(len(tree), top - 1.3, width=3.0)
    leaves = []
    for (a, succ), xy, w, ql in zip(tree, apos, weights, q_labels):
        d.action(ax, xy)
        d.link(ax, root, xy, d.STATE_R, d.ACTION_R, label=(f"{an[a]}" + (f"\nπ={d.fmt(w)}" if w is not None else "")),
               side=1 if xy[0] < 0 else -1, offset=0.1, fontsize=8, arrow=False)
        ax.text(xy[0] + (0.14 if xy[0] >= 0 else -0.14), xy[1] - 0.05, ql, fontsize=8, color="#1f5fbf",
                ha="left" if xy[0] >= 0 else "right", va="top")
        spos = _layout(len(succ), top - 2.75, x0=xy[0], width=1.3 if len(succ) > 1 else 0)
        for (s2, p, r), sp in zip(succ, spos):
            d.state(ax, sp, names[s2], fontsize=7.5)
            d.link(ax, xy, sp, d.ACTION_R, d.STATE_R, label=f"p={d.fmt(p)}" + (f"\nr={d.fmt(r)}" if r else ""),
                   side=-1 if sp[0] < xy[0] else 1, offset=0.07, fontsize=7.5, arrow=False)
            leaves.append((sp, s2))
    if maxarc:
        d.max_arc(ax, root, apos[0], apos[-1], radius=0.55)
    for sp, s2 in leaves:
        ax.text(sp[0], sp[1] - 0.38, values[1](s2), fontsize=8, ha="center", va="top", color="#1f5fbf")
    return root


def fig3(out_dir=None, **kw) -> d.FigureResult:
    """Figure 3: three planning backup diagrams with the MDP's numbers."""
    data = fig3_data(**kw)
    s, a, g = data["state"], data["action"], data["gamma"]
    names, an = data["state_names"], data["action_names"]
    Vp, Vs, Qs = data["V_pi"], data["V_star"], data["Q_star"]
    fig = d.new_figure(12.6, 5.4)
    xl, yl = (-2.7, 2.7), (-3.6, 0.9)
    ax1 = d.diagram_axes(fig, [0.0, 0.2, 0.33, 0.68], xl, yl, "(a) Bellman expectation backup, $V^\\pi$")
    _state_tree(ax1, data, (f"$V^\\pi$={d.fmt(Vp[s])}", lambda s2: f"{d.fmt(Vp[s2])}"),
                data["policy"][s], ["" for _ in data["tree"]])
    ax2 = d.diagram_axes(fig, [0.335, 0.2, 0.33, 0.68], xl, yl, "(b) Bellman optimality backup, $V^*$")
    _state_tree(ax2, data, (f"$V^*$={d.fmt(Vs[s])}", lambda s2: f"{d.fmt(Vs[s2])}"),
                [None] * len(data["tree"]), [f"Q*={d.fmt(Qs[s, b])}" for b, _ in data["tree"]], maxarc=True)
    # (c) Q*: root (s, a) → successors s' → their actions a' with a max arc
    ax3 = d.diagram_axes(fig, [0.67, 0.2, 0.33, 0.68], xl, yl, "(c) Bellman optimality backup, $Q^*$")
    root = (0.0, 0.0)
    d.state(ax3, (0.0, 0.55), names[s], r=0.2, fontsize=7)
    d.link(ax3, (0.0, 0.55), root, 0.2, d.ACTION_R, arrow=False)
    d.action(ax3, root)
    ax3.text(0.16, 0.0, f"{an[a]}: Q*={d.fmt(Qs[s, a])}", fontsize=8.5, va="center", color="#1f5fbf")
    succ = data["tree"][a][1]
    spos = _layout(len(succ), -1.4, width=2.8)
    for (s2, p, r), sp in zip(succ, spos):
        d.state(ax3, sp, names[s2], fontsize=7.5)
        d.link(ax3, root, sp, d.ACTION_R, d.STATE_R, label=f"p={d.fmt(p)}" + (f", r={d.fmt(r)}" if r else ""),
               side=-1 if sp[0] < 0 else 1, offset=0.1, fontsize=7.5, arrow=False)
        apos = _layout(len(an), -2.75, x0=sp[0], width=1.0)
        for b, ap in enumerate(apos):
            d.action(ax3, ap)
            d.link(ax3, sp, ap, d.STATE_R, d.ACTION_R, arrow=False)
            ax3.text(ap[0], ap[1] - 0.15, f"{an[b]}\n{d.fmt(Qs[s2, b])}", fontsize=7.5, ha="center", va="top",
                     color="#1f5fbf")
        d.max_arc(ax3, sp, apos[0], apos[-1], radius=0.45)
    eqs = [
        ("$V^\\pi(s)=\\sum_a \\pi(a|s)\\sum_{s'}P(s'|s,a)\\,[r+\\gamma V^\\pi(s')]$", data["v_pi_backup"]),
        ("$V^*(s)=\\max_a \\sum_{s'}P(s'|s,a)\\,[r+\\gamma V^*(s')]$", data["v_star_backup"]),
        ("$Q^*(s,a)=\\sum_{s'}P(s'|s,a)\\,[r+\\gamma \\max_{a'}Q^*(s',a')]$", data["q_star_backup"]),
    ]
    for i, (eq, val) in enumerate(eqs):
        fig.text(0.167 + 0.3345 * i, 0.12, eq, ha="center", fontsize=9.5)
        fig.text(0.167 + 0.3345 * i, 0.05, f"= {d.fmt(val, 5)} from the tree's numbers", ha="center", fontsize=9)
    fig.suptitle(f"Planning backups on catalog.forest(S=3), γ = {d.fmt(g)}, π uniform "
                 "(values: planning.evaluate_policy / value_iteration)", fontsize=11)
    return d.finish(fig, "fig3_planning_backups", "Figure 3: planning backup diagrams",
                    "Open circles: states; dots: actions; arcs: max. Each root value equals the backup of "
                    "the values below it.", data, out_dir)


# ------------------------------------------------------------------ 5. learning backups
def fig5_data(p_right: float = 0.75, seed: int = 3, gamma: float = 0.9, n_states: int = 3) -> dict:
    """An episode of the line world under π(right|s) = p_right from ``mdp.to_env(seed)`` (actions
    drawn from ``np.random.default_rng(seed)``), V = V^π from ``planning.evaluate_policy``, and
    the three targets for V(s_0):

        MC:    G_0 = Σ_k γ^k r_{k+1}   (the whole episode, to the terminal state)
        TD(0): r_1 + γ V(s_1)          (one sampled step, bootstrap)
        DP:    Σ_a π(a|s_0) Σ_s' P(s'|s_0,a)[r + γ V(s')]   (every action and successor, one step)
    """
    from policylab import planning
    from policylab.mdp import catalog

    mdp = catalog.line_world(n_states, gamma=gamma)
    pi = np.tile([1.0 - p_right, p_right], (mdp.n_states, 1))
    V = planning.evaluate_policy(mdp, pi)
    env = mdp.to_env(seed=seed, max_episode_steps=1000)
    rng = np.random.default_rng(seed)
    s, _ = env.reset(seed=seed)
    episode = []
    while True:
        a = int(rng.random() < p_right)
        s2, r, term, trunc, _ = env.step(a)
        episode.append((int(s), a, float(r), int(s2)))
        s = s2
        if term or trunc:
            break
    G0 = sum(gamma ** k * r for k, (_, _, r, _) in enumerate(episode))
    s0, _, r1, s1 = episode[0]
    tree = backup_tree(mdp, s0)
    _, dp = _backup(tree, gamma, V, pi[s0])
    return {"episode": episode, "terminated": bool(term), "V": V, "policy": pi, "gamma": gamma, "G0": G0,
            "td_target": r1 + gamma * V[s1], "dp_target": dp, "tree": tree,
            "state_names": list(mdp.state_names), "action_names": list(mdp.action_names),
            "terminal": [bool(t) for t in mdp.terminal]}


def _chain(ax, data, steps, top=0.0, dy=0.62):
    """Vertical s → a → s' chain of ``steps`` transitions (an ellipsis stands for skipped ones)."""
    names, an, term = data["state_names"], data["action_names"], data["terminal"]
    y = top
    first = steps[0][1][0]
    d.state(ax, (0, y), names[first], terminal=term[first])
    for k, (t, (s, a, r, s2)) in enumerate(steps):
        if k > 0 and steps[k - 1][0] != t - 1:      # skipped transitions: dotted line
            gap = 2.2 * dy
            ax.plot([0, 0], [y - d.STATE_R, y - gap + d.STATE_R], ls=":", color="black", lw=1.4)
            ax.text(0.15, y - gap / 2, f"{t - steps[k - 1][0] - 1} more steps", fontsize=8, va="center",
                    color="#555555")
            y -= gap
            d.state(ax, (0, y), names[s], terminal=term[s])
        ya, y2 = y - dy, y - 2 * dy
        d.action(ax, (0, ya))
        d.link(ax, (0, y), (0, ya), d.STATE_R, d.ACTION_R, arrow=False, label=an[a], side=1, offset=0.1)
        d.link(ax, (0, ya), (0, y2), d.ACTION_R, d.STATE_R, arrow=False, label=f"r={d.fmt(r)}", side=-1, offset=0.1,
               label_color="#b26a00")
        d.state(ax, (0, y2), names[s2], terminal=term[s2])
        y = y2
    return y


def fig5(out_dir=None, **kw) -> d.FigureResult:
    """Figure 5: Monte Carlo, TD(0) and DP backups of V(s_0) on one line-world episode."""
    data = fig5_data(**kw)
    ep, V, g = data["episode"], data["V"], data["gamma"]
    names = data["state_names"]
    fig = d.new_figure(12.6, 6.6)
    steps = list(enumerate(ep))
    shown = steps if len(steps) <= 5 else steps[:2] + steps[-2:]
    xl, yl = (-2.6, 2.6), (-(2 * len(shown) + 2.2 * (len(shown) < len(steps))) * 0.62 - 0.45, 0.5)
    ax1 = d.diagram_axes(fig, [0.0, 0.17, 0.33, 0.73], xl, yl, "(a) Monte Carlo: the full episode")
    _chain(ax1, data, shown)
    ax2 = d.diagram_axes(fig, [0.335, 0.17, 0.33, 0.73], xl, yl, "(b) TD(0): one sampled step, bootstrap")
    _chain(ax2, data, steps[:1])
    ax2.text(0.4, -2 * 0.62, f"V({names[ep[0][3]]}) = {d.fmt(V[ep[0][3]])}", fontsize=8.5, va="center",
             color="#1f5fbf")
    ax3 = d.diagram_axes(fig, [0.67, 0.17, 0.33, 0.73], xl, yl, "(c) Dynamic programming: full width, one step")
    s0 = ep[0][0]
    d.state(ax3, (0, 0), names[s0])
    apos = _layout(len(data["tree"]), -1.3, width=2.6)
    for (a, succ), xy in zip(data["tree"], apos):
        d.action(ax3, xy)
        d.link(ax3, (0, 0), xy, d.STATE_R, d.ACTION_R, arrow=False, label=f"{data['action_names'][a]}\n"
               f"π={d.fmt(data['policy'][s0, a])}", side=-1 if xy[0] < 0 else 1, offset=0.12, fontsize=8)
        for (s2, p, r), sp in zip(succ, _layout(len(succ), -2.6, x0=xy[0], width=1.0 if len(succ) > 1 else 0)):
            d.state(ax3, sp, names[s2], terminal=data["terminal"][s2])
            d.link(ax3, xy, sp, d.ACTION_R, d.STATE_R, arrow=False, label=f"p={d.fmt(p)}, r={d.fmt(r)}",
                   side=1 if sp[0] >= 0 else -1, offset=0.1, fontsize=7.5)
            ax3.text(sp[0], sp[1] - 0.4, f"V={d.fmt(V[s2])}", fontsize=8, ha="center", va="top", color="#1f5fbf")
    rewards = " + ".join(f"{d.fmt(g ** k, 3)}·{d.fmt(r)}" for k, (_, _, r, _) in enumerate(ep))
    if len(ep) > 6:
        rewards = f"Σ over {len(ep)} rewards"
    texts = [f"target $G_0$ = {rewards} = {d.fmt(data['G0'], 4)}",
             (f"target $r_1+\\gamma V$({names[ep[0][3]]}) = {d.fmt(ep[0][2])} + {d.fmt(g)}·{d.fmt(V[ep[0][3]], 4)} = "
             f"{d.fmt(data['td_target'], 4)}"),
             f"target $\\sum_a\\pi\\sum_{{s'}}P[r+\\gamma V(s')]$ = {d.fmt(data['dp_target'], 4)}"]
    for i, t in enumerate(texts):
        fig.text(0.167 + 0.3345 * i, 0.1, t, ha="center", fontsize=9, wrap=True)
    fig.text(0.5, 0.035, f"all three update V({names[s0]}) = {d.fmt(V[s0], 4)} (= $V^\\pi$, planning.evaluate_policy); "
             f"line world, γ = {d.fmt(g)}, π(right) = {d.fmt(data['policy'][0, 1])}, episode of "
             f"{len(ep)} steps from mdp.to_env()", ha="center", fontsize=9, color="#444444")
    fig.suptitle("Learning backups: Monte Carlo vs TD(0) vs dynamic programming", fontsize=11)
    return d.finish(fig, "fig5_learning_backups", "Figure 5: learning backup diagrams",
                    "MC waits for the whole episode's return; TD(0) bootstraps from one step; DP takes the "
                    "expectation over every action and successor (needs the model).", data, out_dir)
