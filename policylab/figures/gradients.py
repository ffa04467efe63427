"""REINFORCE's gradient estimates around the exact policy gradient (lecture §6.2): the spread of
many Monte Carlo estimates ĝ, with and without the baseline b(s) = V^π(s), on a small tabular MDP
with a softmax policy π_θ(a|s) = softmax(θ_s), against ``planning.exact_policy_gradient``.

    ĝ = Σ_t γ^t ∇_θ log π_θ(a_t|s_t) (G_t − b(s_t)),   ∇_{θ_s} log π(a|s) = e_a − π(·|s)

(the unbiased estimator of ∇J for J = E[G_0]; Sutton & Barto §13.3–13.4). A baseline that
depends only on the state leaves the mean unchanged and lowers the variance.
"""

from __future__ import annotations

import numpy as np

from policylab.figures import _draw as d

__all__ = ["reinforce_estimates", "reinforce_spread", "reinforce_spread_data"]


def _sample_episodes(mdp, pi, episodes: int, rng):
    """``episodes`` episodes of ``mdp`` under ``pi`` side by side: time-major (H, E) arrays s, a, r,
    terminated and alive (False after the episode ended); cut where γ^H < 1e-12."""
    S, A = pi.shape
    indptr, nxt, prob, rew = mdp.transitions()
    P, R = np.zeros((S * A, S)), np.zeros((S * A, S))
    rows = np.repeat(np.arange(S * A), np.diff(indptr))
    P[rows, nxt], R[rows, nxt] = prob, rew
    P, R = P.reshape(S, A, S), R.reshape(S, A, S)
    horizon = int(np.ceil(np.log(1e-12) / np.log(mdp.gamma))) if mdp.gamma < 1 else 10_000
    s = rng.choice(S, size=episodes, p=mdp.initial)
    alive = ~mdp.terminal[s]
    cols = {k: [] for k in ("s", "a", "r", "terminated", "alive")}
    for _ in range(horizon):
        a = (rng.random((episodes, 1)) > np.cumsum(pi[s], axis=1)).sum(1).clip(max=A - 1)
        s2 = (rng.random((episodes, 1)) > np.cumsum(P[s, a], axis=1)).sum(1).clip(max=S - 1)
        for k, v in zip(cols, (s, a, np.where(alive, R[s, a, s2], 0.0), mdp.terminal[s2] & alive, alive)):
            cols[k].append(v)
        alive = alive & ~mdp.terminal[s2]
        s = s2
        if not alive.any():
            break
    return {k: np.stack(v) for k, v in cols.items()}  # (H, E)


def reinforce_estimates(mdp, logits, episodes: int, baseline=None, seed: int = 0) -> np.ndarray:
    """One REINFORCE estimate per episode, (E, S, A): ĝ_e = Σ_t γ^t (G_t − b(s_t)) (e_{a_t} − π(·|s_t))
    placed in row s_t, for π = softmax(logits) and b = ``baseline`` (S,) (None: b = 0)."""
    from policylab.planning import softmax_policy
    from policylab.returns import discounted_returns

    pi = softmax_policy(np.asarray(logits, dtype=float))
    S, A = pi.shape
    b = np.zeros(S) if baseline is None else np.asarray(baseline, dtype=float)
    ep = _sample_episodes(mdp, pi, episodes, np.random.default_rng(seed))
    H, E = ep["s"].shape
    G = discounted_returns(ep["r"], mdp.gamma, terminated=ep["terminated"])       # (H, E)
    coef = mdp.gamma ** np.arange(H)[:, None] * (G - b[ep["s"]]) * ep["alive"]   # (H, E)
    e = np.broadcast_to(np.arange(E), (H, E))
    first = np.bincount((e * S * A + ep["s"] * A + ep["a"]).ravel(), coef.ravel(), E * S * A)
    per_state = np.bincount((e * S + ep["s"]).ravel(), coef.ravel(), E * S).reshape(E, S)
    return first.reshape(E, S, A) - per_state[:, :, None] * pi[None]             # (E, S, A)


def reinforce_spread_data(mdp=None, episodes: int = 4000, batch: int = 10, seed: int = 0) -> dict:
    """Per-episode estimates with b = 0 and with b = V^π (same episodes: same seed), averaged in
    batches of ``batch`` episodes, against ``planning.exact_policy_gradient``. Default MDP: the line
    world (γ = 0.9) with logits drawn from ``seed``. Returns exact (S, A), batch means
    {"none", "baseline"} (E/batch, S, A), the per-episode mean, its standard error, and the total
    variance Σ Var[ĝ] of each estimator."""
    from policylab import planning
    from policylab.mdp import catalog

    mdp = catalog.line_world(3, gamma=0.9) if mdp is None else mdp
    logits = np.random.default_rng(seed).normal(size=(mdp.n_states, mdp.n_actions)) * 0.5
    exact = planning.exact_policy_gradient(mdp, logits)
    V = planning.evaluate_policy(mdp, planning.softmax_policy(logits))
    out = {"exact": exact, "logits": logits, "V": V, "episodes": episodes, "batch": batch, "gamma": mdp.gamma,
           "state_names": list(mdp.state_names), "action_names": list(mdp.action_names),
           "live": ~mdp.terminal, "batches": {}, "mean": {}, "stderr": {}, "total_variance": {}}
    for name, b in (("none", None), ("baseline", V)):
        g = reinforce_estimates(mdp, logits, episodes, baseline=b, seed=seed + 1)     # (E, S, A)
        n = episodes // batch
        out["batches"][name] = g[: n * batch].reshape(n, batch, *g.shape[1:]).mean(axis=1)
        out["mean"][name] = g.mean(axis=0)
        out["stderr"][name] = g.std(axis=0, ddof=1) / np.sqrt(episodes)
        out["total_variance"][name] = float(g.var(axis=0, ddof=1).sum())
    return out


def reinforce_spread(out_dir=None, **kw) -> d.FigureResult:
    """Strip plot per state of θ(s, last action)'s gradient: batch means of REINFORCE without
    (grey) and with (blue) the baseline V^π, the exact gradient as a red bar."""
    data = reinforce_spread_data(**kw)
    live = np.flatnonzero(data["live"])
    a = len(data["action_names"]) - 1          # softmax rows sum to 0: one action per state says it all
    fig = d.new_figure(8.4, 4.4)
    ax = fig.add_axes([0.1, 0.14, 0.62, 0.72])
    rng = np.random.default_rng(0)
    for k, s in enumerate(live):
        for off, name, color in ((-0.18, "none", "#9e9e9e"), (0.18, "baseline", "#1f5fbf")):
            y = data["batches"][name][:, s, a]
            ax.scatter(k + off + rng.uniform(-0.08, 0.08, len(y)), y, s=6, alpha=0.45, color=color, lw=0,
                       label=None if k else {"none": "no baseline", "baseline": "baseline b(s) = V^π(s)"}[name])
        ax.plot([k - 0.38, k + 0.38], [data["exact"][s, a]] * 2, color=d.HIGHLIGHT, lw=2.2,
                label=None if k else "exact ∇J from the model\n(planning.exact_policy_gradient)")
    ax.set_xticks(range(len(live)), [f"θ({data['state_names'][s]}, {data['action_names'][a]})" for s in live])
    ax.set_ylabel(f"gradient estimate (mean of {data['batch']} episodes)")
    ax.axhline(0, color="black", lw=0.6)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, markerscale=2.5)
    vn, vb = data["total_variance"]["none"], data["total_variance"]["baseline"]
    fig.text(0.74, 0.45, f"Σ Var[ĝ] per episode:\n  no baseline  {vn:.3g}\n  baseline     {vb:.3g}\n"
             f"  ratio        {vb / vn:.2f}", fontsize=9, family="DejaVu Sans Mono", va="top")
    fig.suptitle(f"REINFORCE on the line world (γ = {d.fmt(data['gamma'])}): {data['episodes']} episodes, "
                 "same mean, less spread with a baseline", fontsize=10.5)
    return d.finish(fig, "reinforce_gradient_spread", "REINFORCE gradient estimates with and without a baseline",
                    "Each dot is a REINFORCE estimate from a batch of episodes; the red bar is the exact policy "
                    "gradient from the model. Subtracting V^π(s) keeps the mean and shrinks the spread.",
                    data, out_dir)
