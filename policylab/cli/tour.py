"""``policylab tour [--out tour/] [--quick] [--no-llm]``: the lecture's whole arc in a few minutes.

1. the line world MDP and its Q* for several γ (planning.value_iteration);
2. Q-learning on it (tabular.q_learning), compared with Q*;
3. PPO on CartPole-v1 (policylab.deep), a few seeds, evaluated, learning curves with bootstrap CIs;
4. SFT, then a few DPO and GRPO steps on the tiny offline Llama (needs the ``llm`` extra);
5. the lecture's six figures (PNG + SVG);
then ``index.html``: one self-contained page with every table and figure, and ``summary.json``.
A stage that cannot run says so (and why) on the page; a stage that fails shows its error and the
command exits 1. ``--quick`` shrinks every stage (for tests and a first look).
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TourConfig:
    q_steps: int            # Q-learning updates
    ppo_seeds: tuple        # one PPO run per seed
    ppo_steps: int          # env steps per PPO run
    sft_steps: int          # supervised warm-up steps of the tiny LM
    dpo_steps: int
    grpo_steps: int


FULL = TourConfig(q_steps=20_000, ppo_seeds=(0, 1, 2), ppo_steps=20_000, sft_steps=150, dpo_steps=30, grpo_steps=8)
QUICK = TourConfig(q_steps=2_000, ppo_seeds=(0,), ppo_steps=1_024, sft_steps=5, dpo_steps=2, grpo_steps=1)
GAMMAS = (0.0, 0.5, 0.9, 0.99)


def add_parser(subparsers) -> None:
    import argparse

    p = subparsers.add_parser("tour", help="walk through the whole arc and write tour/index.html",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="tour", help="output folder (default tour/)")
    p.add_argument("--quick", action="store_true", help="tiny version of every stage (about a minute)")
    p.add_argument("--no-llm", action="store_true", help="skip the language-model stage")
    p.add_argument("--seed", type=int, default=0, help="seed of the tabular and LM stages (default 0)")
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------ stages
def stage_planning(out, cfg, args, summary):
    from policylab import planning
    from policylab.figures.report import Section
    from policylab.mdp import catalog

    rows, summary["q_star"] = [], {}
    for g in GAMMAS:
        mdp = catalog.line_world(gamma=g)
        res = planning.value_iteration(mdp)
        summary["q_star"][str(g)] = res.Q.tolist()
        for s in range(mdp.n_states - 1):
            rows.append((f"{g:g}", mdp.state_names[s], res.Q[s, 0], res.Q[s, 1],
                         mdp.action_names[res.policy[s]] if res.Q[s].max() > res.Q[s].min() else "tie"))
    _say("  γ     state  Q*(s,left)  Q*(s,right)  π*(s)")
    for r in rows:
        _say(f"  {r[0]:<5} {r[1]:<6} {r[2]:>10.4f} {r[3]:>12.4f}  {r[4]}")
    return Section("1. Planning: the line world's Q*", paragraphs=[
        ("catalog.line_world(): states s1, s2, s3 and a terminal goal G; actions left/right; +1 on entering G. "
        "planning.value_iteration gives Q*(s_i, right) = γ^(3−i): γ = 0 sees only the next reward, "
        "γ → 1 values the goal from everywhere.")],
        tables=[("Q* by value iteration", ["γ", "state", "Q*(s, left)", "Q*(s, right)", "greedy"], rows)])


def stage_q_learning(out, cfg, args, summary):
    import numpy as np

    from policylab import planning, tabular
    from policylab.figures.report import Section
    from policylab.mdp import catalog

    mdp = catalog.line_world(gamma=0.9)
    q_star = planning.value_iteration(mdp).Q
    res = tabular.q_learning(mdp, steps=cfg.q_steps, alpha=0.1, epsilon=0.2, seed=args.seed, progress=True)
    err = np.abs(res.Q - q_star)[:-1]
    same = bool(np.array_equal(res.policy[:-1], q_star.argmax(axis=1)[:-1]))
    summary["q_learning"] = {"steps": cfg.q_steps, "max_abs_error": float(err.max()), "greedy_matches": same,
                             "episodes": len(res.episode_returns)}
    rows = [(mdp.state_names[s], res.Q[s, 0], q_star[s, 0], res.Q[s, 1], q_star[s, 1]) for s in range(mdp.n_states - 1)]
    _say(f"  {cfg.q_steps} updates, {len(res.episode_returns)} episodes: max |Q − Q*| = {err.max():.4f}, "
         f"greedy policy {'matches' if same else 'differs from'} π*")
    return Section("2. Learning: Q-learning vs Q*", paragraphs=[
        (f"tabular.q_learning(line_world(γ=0.9), steps={cfg.q_steps}, α=0.1, ε=0.2, seed={args.seed}): "
        f"{len(res.episode_returns)} episodes; max |Q − Q*| = {err.max():.4f}; the greedy policy "
        f"{'matches' if same else 'does not match'} π*. Figure 6 below shows the first updates one by one.")],
        tables=[("learned Q vs Q*", ["state", "Q(s, left)", "Q*(s, left)", "Q(s, right)", "Q*(s, right)"], rows)])


def stage_ppo(out, cfg, args, summary):
    import importlib.util

    from policylab.figures.report import Section

    if importlib.util.find_spec("torch") is None:
        summary["ppo"] = "unavailable: torch not installed"
        return Section("3. Policy gradients: PPO on CartPole-v1", "unavailable", [
            ("torch is not installed, so this stage cannot run. Install the deep extra: pip install -e '.[deep]' "
            "-c constraints.txt (CPU torch), then rerun policylab tour.")])
    import torch

    from policylab.deep import PPO
    from policylab.deep.config import load_preset
    from policylab.figures.curves import learning_curves

    torch.set_num_threads(1)
    hp = load_preset("CartPole-v1", "ppo")
    if cfg.ppo_steps < hp["n_envs"] * hp["n_steps"] * 4:
        hp.update(n_steps=16, batch_size=64, n_epochs=4)   # --quick: several small iterations
    rows, dirs = [], []
    for seed in cfg.ppo_seeds:
        run_dir = out / "runs" / f"ppo-cartpole-s{seed}"
        if (run_dir / "progress.csv").exists():
            (run_dir / "progress.csv").unlink()            # a rerun starts a fresh log
        _say(f"  PPO seed {seed}: {cfg.ppo_steps} steps → {run_dir}")
        agent = PPO("CartPole-v1", seed=seed, **hp).learn(cfg.ppo_steps, progress_bar=True, log_dir=run_dir,
                                                          tensorboard=False)
        ev = agent.evaluate(episodes=10)
        rows.append((seed, agent.num_steps, ev.mean, ev.std))
        dirs.append(run_dir)
        _say(f"  PPO seed {seed}: evaluation return {ev.mean:.1f} ± {ev.std:.1f} (10 episodes, greedy)")
    curves = learning_curves(dirs, "charts/episodic_return", agg="iqm", out=out / "ppo_cartpole_curves.png")
    (ip, il, ih) = curves.groups["ppo-cartpole"]["final_stats"]["iqm"]
    summary["ppo"] = {"seeds": list(cfg.ppo_seeds), "steps": cfg.ppo_steps,
                      "eval_mean": [r[2] for r in rows], "final_iqm": [float(ip), float(il), float(ih)]}
    return Section("3. Policy gradients: PPO on CartPole-v1", paragraphs=[
        (f"policylab.deep.PPO with the bundled rl-zoo preset, {cfg.ppo_steps} env steps per seed, then 10 greedy "
        "evaluation episodes (500 is the maximum). The curve is the IQM over seeds of the logged episodic "
        "return with a 95% stratified-bootstrap band (policylab plot).")],
        tables=[("evaluation after training", ["seed", "env steps", "mean return", "std"], rows),
                ("final training return (last 10% of the run)", ["IQM", "95% CI low", "95% CI high"],
                 [(float(ip), float(il), float(ih))])],
        images=[(curves.files[0], "PPO on CartPole-v1: episodic return during training")])


def stage_llm(out, cfg, args, summary):
    import copy
    import importlib.util

    from policylab.figures.report import Section

    title = "4. Language models: SFT, DPO and GRPO on a tiny offline Llama"
    if args.no_llm:
        summary["llm"] = "skipped (--no-llm)"
        return Section(title, "unavailable", ["Skipped with --no-llm."])
    if importlib.util.find_spec("transformers") is None:
        summary["llm"] = "unavailable: transformers not installed"
        return Section(title, "unavailable", [
            ("transformers is not installed, so this stage cannot run. Install the llm extra: "
            "pip install -e '.[llm]' (from a checkout) or pip install 'policylab[llm]', then rerun policylab tour.")])
    import torch

    from policylab.llm import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer
    from policylab.llm.task import (
        accuracy,
        digit_match_reward,
        dpo_records,
        make_addition_problems,
        sft_records,
    )

    torch.set_num_threads(1)
    train, test = make_addition_problems(seed=args.seed)
    common = {"seed": args.seed, "progress": True, "save_total_limit": 1}
    sft = SFTTrainer("tiny", None, SFTConfig(max_steps=cfg.sft_steps, batch_size=32, learning_rate=3e-3,
                                             output_dir=str(out / "llm" / "sft"), **common), sft_records(train))
    acc0 = accuracy(sft.model, sft.tokenizer, test[:100])
    sft_log = sft.train()
    acc1 = accuracy(sft.model, sft.tokenizer, test[:100])
    _say(f"  SFT {cfg.sft_steps} steps: loss {sft_log[0]['loss']:.3f} → {sft_log[-1]['loss']:.3f}; "
         f"greedy accuracy on 100 held-out sums {acc0:.2f} → {acc1:.2f}")
    dpo = DPOTrainer(copy.deepcopy(sft.model), sft.tokenizer, DPOConfig(
        max_steps=cfg.dpo_steps, batch_size=16, learning_rate=1e-3, beta=0.1, precompute_ref_logps=True,
        output_dir=str(out / "llm" / "dpo"), **common), dpo_records(train[:256], seed=args.seed))
    dpo_log = dpo.train()
    after = dpo.evaluate()
    _say(f"  DPO {cfg.dpo_steps} steps: loss {dpo_log[0]['loss']:.3f} → {after['loss']:.3f}; preference accuracy "
         f"vs reference {after['rewards/accuracies']:.2f}, margin {after['rewards/margins']:.3f}")
    grpo = GRPOTrainer(copy.deepcopy(sft.model), sft.tokenizer, GRPOConfig(
        max_steps=cfg.grpo_steps, batch_size=16, num_generations=8, max_completion_length=4, learning_rate=1e-3,
        output_dir=str(out / "llm" / "grpo"), **common), train[:256], reward_funcs=[digit_match_reward])
    grpo_log = grpo.train()
    rewards = [h["rewards/mean"] for h in grpo_log]
    _say(f"  GRPO {cfg.grpo_steps} steps: mean reward per step {', '.join(f'{r:.2f}' for r in rewards)}")
    summary["llm"] = {"sft_accuracy": [acc0, acc1], "dpo": {k: float(v) for k, v in after.items()},
                      "grpo_rewards": rewards}
    return Section(title, paragraphs=[
        ("A 2-layer character-level Llama (≈95k parameters, built in code, no download) learns small sums "
        "'a+b=': a short SFT from a teacher, then DPO on (correct, near-miss) answer pairs and GRPO with a "
        "digit-match reward, each from the SFT model. Steps are few: the numbers show the machinery, not a "
        "trained model.")],
        tables=[("SFT", ["steps", "loss first", "loss last", "held-out accuracy before", "after"],
                 [(cfg.sft_steps, sft_log[0]["loss"], sft_log[-1]["loss"], acc0, acc1)]),
                ("DPO (on its 256 training pairs, against the frozen SFT reference)",
                 ["steps", "loss first step", "loss after", "preference accuracy", "reward margin"],
                 [(cfg.dpo_steps, dpo_log[0]["loss"], after["loss"], after["rewards/accuracies"],
                   after["rewards/margins"])]),
                ("GRPO (8 completions per prompt, group-relative advantages)", ["step", "mean reward", "loss"],
                 [(h["step"], h["rewards/mean"], h["loss"]) for h in grpo_log])])


def stage_figures(out, cfg, args, summary):
    from policylab.figures import render_all
    from policylab.figures.report import Section

    results = render_all(out / "figures", progress=True)
    summary["figures"] = [str(f) for r in results for f in r.files]
    return Section("5. The lecture's figures", paragraphs=[
        "Each figure is computed by the library (policylab figures --out DIR writes the same PNG + SVG files)."],
        images=[(r.png, f"{r.title}. {r.caption}") for r in results])


STAGES = [("planning", stage_planning), ("q-learning", stage_q_learning), ("ppo", stage_ppo),
          ("llm", stage_llm), ("figures", stage_figures)]


def run(args) -> int:
    from policylab.figures.report import Section, write_html

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = QUICK if args.quick else FULL
    sections, summary, failed = [], {"quick": bool(args.quick), "stages": {}}, []
    t_all = time.perf_counter()
    for i, (name, stage) in enumerate(STAGES, 1):
        _say(f"[{i}/{len(STAGES)}] {name} ...")
        t0 = time.perf_counter()
        try:
            section = stage(out, cfg, args, summary)
        except Exception as exc:  # noqa: BLE001 — a failed stage is reported, the tour goes on
            section = Section(f"{i}. {name}", "failed", [f"{type(exc).__name__}: {exc}"], pre=traceback.format_exc())
            failed.append(name)
        dt = time.perf_counter() - t0
        summary["stages"][name] = {"status": section.status, "seconds": round(dt, 2)}
        _say(f"[{i}/{len(STAGES)}] {name}: {section.status} ({dt:.1f} s)")
        sections.append(section)
    index = write_html(out / "index.html", "policylab tour: from MDPs to GRPO and DPO", sections,
                       intro="Every number and figure on this page was computed by policylab while the tour ran "
                             f"({'quick' if args.quick else 'full'} mode, {time.perf_counter() - t_all:.0f} s).")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    _say(f"wrote {index} and {out / 'summary.json'}")
    if failed:
        _say(f"failed stages: {', '.join(failed)} (see {index})")
    return 1 if failed else 0
