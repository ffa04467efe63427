"""GRPO's group-relative advantages, DPO's loss and the Bradley–Terry reward-model loss (lecture
§7.2–7.3), drawn from the library's own functions: ``returns.group_relative_advantages`` on sampled
rewards, ``losses.dpo_loss`` over a range of log-ratio differences, ``losses.bradley_terry_loss``
over a range of reward differences (needs torch).
"""

from __future__ import annotations

import numpy as np

from policylab.figures import _draw as d

__all__ = ["bradley_terry", "bradley_terry_data", "preference_losses", "preference_losses_data"]


def preference_losses_data(group_size: int = 8, groups: int = 3, betas=(0.1, 0.5, 1.0), seed: int = 0) -> dict:
    """{"rewards" (groups, G), "advantages" (groups, G) with scale 'none' and "advantages_std",
    "delta": Δ = log-ratio(chosen) − log-ratio(rejected), "dpo_loss" {β: (len(Δ),)}}."""
    import torch

    from policylab.losses import dpo_loss
    from policylab.returns import group_relative_advantages

    rng = np.random.default_rng(seed)
    p = np.array([0.2, 0.5, 0.8])[:groups] if groups <= 3 else rng.uniform(0.1, 0.9, groups)
    rewards = (rng.random((groups, group_size)) < p[:, None]).astype(float)    # correct (1) or not (0)
    flat = rewards.ravel()
    adv = group_relative_advantages(flat, group_size).reshape(groups, group_size)
    adv_std = group_relative_advantages(flat, group_size, scale="std").reshape(groups, group_size)
    delta = np.linspace(-10, 10, 201)
    zeros = torch.zeros(len(delta), dtype=torch.float64)
    loss = {}
    for b in betas:
        out = dpo_loss(torch.as_tensor(delta), zeros, zeros, zeros, beta=b)
        loss[float(b)] = out.losses.detach().numpy()                          # (len(Δ),) per pair
    return {"rewards": rewards, "advantages": adv, "advantages_std": adv_std, "delta": delta, "dpo_loss": loss,
            "group_size": group_size}


def preference_losses(out_dir=None, **kw) -> d.FigureResult:
    """(a) rewards and group-relative advantages of a few GRPO groups; (b) the DPO loss against the
    difference of log-ratios for several β."""
    data = preference_losses_data(**kw)
    fig = d.new_figure(11.0, 4.0)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1.0]})
    groups, G = data["rewards"].shape
    for g in range(groups):
        x = g * (G + 2) + np.arange(G)
        r, a = data["rewards"][g], data["advantages"][g]
        ax1.bar(x, a, color=np.where(a > 0, "#2e7d32", "#c62828"), width=0.8)
        ax1.scatter(x, r, marker="o", s=14, color="black", zorder=3, label="reward r_i" if g == 0 else None)
        ax1.hlines(r.mean(), x[0] - 0.5, x[-1] + 0.5, color="#1f5fbf", lw=1.6, label="group mean r̄" if g == 0 else None)
    ax1.axhline(0, color="black", lw=0.6)
    ax1.set_xticks([g * (G + 2) + (G - 1) / 2 for g in range(groups)], [f"prompt {g + 1}" for g in range(groups)])
    ax1.set_ylabel("reward (dots), advantage Â_i = r_i − r̄ (bars)", fontsize=9)
    ax1.set_title("(a) GRPO: returns.group_relative_advantages", fontsize=10)
    ax1.legend(fontsize=8, loc="lower right")
    for b, loss in data["dpo_loss"].items():
        ax2.plot(data["delta"], loss, lw=1.8, label=f"β = {d.fmt(b)}")
    ax2.set_xlabel("Δ = log π_θ/π_ref (y_w) − log π_θ/π_ref (y_l)", fontsize=9)
    ax2.set_ylabel("L_DPO = −log σ(βΔ)", fontsize=9)
    ax2.set_title("(b) DPO: losses.dpo_loss", fontsize=10)
    ax2.axvline(0, color="black", lw=0.6)
    ax2.legend(fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.88, wspace=0.28)
    return d.finish(fig, "preference_losses", "GRPO advantages and the DPO loss",
                    "GRPO scores each completion against its own group's mean; DPO pushes the chosen "
                    "answer's log-ratio above the rejected one's, more sharply for larger β.", data, out_dir)


def bradley_terry_data(margins=(0.0, 1.0, 2.0)) -> dict:
    """{"delta": Δr = r(x,y_w) − r(x,y_l), "p_prefer": σ(Δr), "loss" {m: (len(Δr),)}}: the loss of each
    pair alone, ``losses.bradley_terry_loss`` on (1,) tensors."""
    import torch

    from policylab.losses import bradley_terry_loss

    delta = np.linspace(-6, 6, 121)
    t = torch.as_tensor(delta, dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    loss = {float(m): np.array([bradley_terry_loss(t[i : i + 1], zero, m).item() for i in range(len(delta))])
            for m in margins}
    return {"delta": delta, "p_prefer": torch.sigmoid(t).numpy(), "loss": loss}


def bradley_terry(out_dir=None, **kw) -> d.FigureResult:
    """(a) the Bradley–Terry preference probability σ(Δr); (b) the reward-model loss −log σ(Δr − m)."""
    data = bradley_terry_data(**kw)
    fig = d.new_figure(10.0, 3.8)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(data["delta"], data["p_prefer"], lw=1.8, color="#1f5fbf")
    ax1.set_xlabel("Δr = r(x, y_w) − r(x, y_l)", fontsize=9)
    ax1.set_ylabel("P(y_w ≻ y_l | x) = σ(Δr)", fontsize=9)
    ax1.set_title("(a) Bradley–Terry: preference probability", fontsize=10)
    for m, loss in data["loss"].items():
        ax2.plot(data["delta"], loss, lw=1.8, label=f"margin m = {d.fmt(m)}")
    ax2.set_xlabel("Δr = r(x, y_w) − r(x, y_l)", fontsize=9)
    ax2.set_ylabel("−log σ(Δr − m)", fontsize=9)
    ax2.set_title("(b) reward-model loss: losses.bradley_terry_loss", fontsize=10)
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.axvline(0, color="black", lw=0.6)
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.88, wspace=0.28)
    return d.finish(fig, "bradley_terry", "The Bradley–Terry model and the reward-model loss",
                    "A reward model is trained so that the preferred answer's score exceeds the other's "
                    "(by at least m with a margin).", data, out_dir)
