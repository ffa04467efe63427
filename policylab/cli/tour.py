"""``policylab tour [--out tour/] [--quick] [--no-llm] [--seed N]``: the lecture's whole arc, each
stage checked against a stated pass/fail criterion.

1. planning: the line world's Q* for several γ (planning.value_iteration) = the closed form γ^(n−i);
2. Q-learning (tabular.q_learning) reaches Q*: max |Q − Q*| < 0.05 and the greedy policy is π*;
3. REINFORCE with and without a baseline: gradient estimates around planning.exact_policy_gradient
   on the line world — both unbiased (|mean − exact| ≤ 4 standard errors), the baseline at least
   halves the variance;
4. the lecture's one-step actor-critic (policylab.deep.ActorCritic) learns CartPole-v1;
5. PPO (numpy backend on the numba VectorCartPole) solves CartPole-v1 on every seed: eval ≥ 475;
6. language models: SFT on a noisy teacher, then GRPO raises held-out accuracy by ≥ 0.15 and DPO
   raises held-out preference accuracy (needs the ``llm`` extra);
7. the lecture's six figures (PNG + SVG);
then ``index.html``: one self-contained page with every criterion, table and figure, and
``summary.json``. A stage that misses its criterion or fails shows red on the page and the
command exits 1; a stage that cannot run (a missing extra) says why. ``--quick`` shrinks the
stages that allow it (tests and a first look); the full tour took 74 s on 2 idle cores
(measured 2026-11-26; longer on a loaded machine).
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
    pg_episodes: int        # REINFORCE episodes per estimator
    ac_steps: int           # actor-critic env steps
    ac_target: float        # actor-critic pass mark: evaluation mean return
    ppo_seeds: tuple        # one PPO run per seed
    ppo_max_steps: int      # PPO budget per seed (stops once an evaluation reaches 475)
    sft_steps: int          # supervised warm-up steps of the tiny LM
    grpo_steps: int
    dpo_steps: int


FULL = TourConfig(q_steps=20_000, pg_episodes=4_000, ac_steps=30_000, ac_target=100.0, ppo_seeds=(0, 1, 2, 3, 4),
                  ppo_max_steps=60_000, sft_steps=500, grpo_steps=150, dpo_steps=200)
QUICK = TourConfig(q_steps=2_000, pg_episodes=2_000, ac_steps=10_000, ac_target=80.0, ppo_seeds=(0,),
                   ppo_max_steps=60_000, sft_steps=500, grpo_steps=150, dpo_steps=200)
GAMMAS = (0.0, 0.5, 0.9, 0.99)
PPO_SOLVED = 475.0
GRPO_MARGIN = 0.15


def add_parser(subparsers) -> None:
    import argparse

    p = subparsers.add_parser("tour", help="walk through the whole arc and write tour/index.html",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="tour", help="output folder (default tour/)")
    p.add_argument("--quick", action="store_true", help="smaller stages where that keeps the criteria (about a minute)")
    p.add_argument("--no-llm", action="store_true", help="skip the language-model stage")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage, 0 ≤ seed < 2**31 (default 0)")
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(msg, flush=True)


def _verdict(ok: bool, text: str) -> tuple[str, str]:
    """(status, criterion line) for a stage: 'ok' when the criterion holds, else 'failed'."""
    return ("ok" if ok else "failed"), ("PASS: " if ok else "FAIL: ") + text


# ------------------------------------------------------------------------------ stages
def stage_planning(out, cfg, args, summary):
    import numpy as np

    from policylab import planning
    from policylab.figures.report import Section
    from policylab.mdp import catalog

    rows, summary["q_star"], worst = [], {}, 0.0
    for g in GAMMAS:
        mdp = catalog.line_world(gamma=g)
        res = planning.value_iteration(mdp)
        n = mdp.n_states - 1
        closed = np.array([[g ** n if i == 1 else g ** (n - i + 2), g ** (n - i)] for i in range(1, n + 1)])
        worst = max(worst, float(np.abs(res.Q[:n] - closed).max()))
        summary["q_star"][str(g)] = res.Q.tolist()
        for s in range(n):
            rows.append((f"{g:g}", mdp.state_names[s], res.Q[s, 0], res.Q[s, 1],
                         mdp.action_names[res.policy[s]] if res.Q[s].max() > res.Q[s].min() else "tie"))
    _say("  γ     state  Q*(s,left)  Q*(s,right)  π*(s)")
    for r in rows:
        _say(f"  {r[0]:<5} {r[1]:<6} {r[2]:>10.4f} {r[3]:>12.4f}  {r[4]}")
    status, crit = _verdict(worst <= 1e-6, f"max |Q* − closed form| = {worst:.1e} ≤ 1e-6 for γ = "
                            f"{', '.join(f'{g:g}' for g in GAMMAS)}")
    summary["planning"] = {"max_error_vs_closed_form": worst}
    return Section("1. Planning: the line world's Q*", status, criterion=crit, paragraphs=[
        ("catalog.line_world(): states s1, s2, s3 and a terminal goal G; actions left/right; +1 on entering G. "
         "planning.value_iteration gives Q*(s_i, right) = γ^(3−i) and Q*(s_i, left) = γ^(5−i) (γ³ in s1): "
         "γ = 0 sees only the next reward, γ → 1 values the goal from everywhere.")],
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
    status, crit = _verdict(err.max() < 0.05 and same, f"max |Q − Q*| = {err.max():.4f} < 0.05 and the greedy "
                            f"policy {'is' if same else 'is not'} π*")
    return Section("2. Learning: Q-learning reaches Q*", status, criterion=crit, paragraphs=[
        (f"tabular.q_learning(line_world(γ=0.9), steps={cfg.q_steps}, α=0.1, ε=0.2, seed={args.seed}): "
         f"{len(res.episode_returns)} episodes, no model — only sampled transitions. Figure 6 below shows the "
         "first updates that move Q, one by one.")],
        tables=[("learned Q vs Q*", ["state", "Q(s, left)", "Q*(s, left)", "Q(s, right)", "Q*(s, right)"], rows)])


def stage_reinforce(out, cfg, args, summary):
    import numpy as np

    from policylab.figures.gradients import reinforce_spread
    from policylab.figures.report import Section

    res = reinforce_spread(out / "figures", episodes=cfg.pg_episodes, seed=args.seed)
    d = res.data
    live = d["live"]
    z = {k: float(np.abs((d["mean"][k] - d["exact"]) / np.maximum(d["stderr"][k], 1e-12))[live].max())
         for k in ("none", "baseline")}
    ratio = d["total_variance"]["baseline"] / d["total_variance"]["none"]
    summary["reinforce"] = {"episodes": cfg.pg_episodes, "max_z": z, "variance_ratio": ratio,
                            "total_variance": d["total_variance"]}
    _say(f"  {cfg.pg_episodes} episodes per estimator: max |mean − exact|/SE = {z['none']:.2f} (no baseline), "
         f"{z['baseline']:.2f} (baseline); variance ratio {ratio:.2f}")
    status, crit = _verdict(max(z.values()) <= 4 and ratio <= 0.5, (
        f"both estimators unbiased (largest |mean − exact| = {max(z.values()):.2f} standard errors ≤ 4) and the "
        f"baseline cuts the variance to {ratio:.2f} ≤ 0.5 of REINFORCE's without it"))
    rows = [(f"θ({d['state_names'][s]}, {a})", d["exact"][s, ai], d["mean"]["none"][s, ai], d["mean"]["baseline"][s, ai])
            for s in np.flatnonzero(live) for ai, a in enumerate(d["action_names"]) if ai == len(d["action_names"]) - 1]
    return Section("3. Policy gradients: REINFORCE with and without a baseline", status, criterion=crit, paragraphs=[
        ("Lecture §6.2 on a model we can solve: the line world with a softmax policy π_θ(a|s) = softmax(θ_s). "
         "planning.exact_policy_gradient gives ∇J = Σ_s d^π(s) Σ_a ∇π(a|s) Q^π(s,a) by a linear solve; each "
         "REINFORCE estimate ĝ = Σ_t γ^t ∇log π(a_t|s_t)(G_t − b(s_t)) uses one sampled episode. The baseline "
         "b(s) = V^π(s) does not move the mean and shrinks the spread.")],
        tables=[("mean of the estimates vs the exact gradient", ["parameter", "exact ∇J", "REINFORCE", "with baseline"],
                 rows),
                ("variance per episode, Σ over parameters", ["no baseline", "baseline V^π", "ratio"],
                 [(d["total_variance"]["none"], d["total_variance"]["baseline"], ratio)])],
        images=[(res.png, f"{res.title}. {res.caption}")])


def _torch_missing(title, summary, key):
    import importlib.util

    from policylab.figures.report import Section

    if importlib.util.find_spec("torch") is not None:
        return None
    summary[key] = "unavailable: torch not installed"
    return Section(title, "unavailable", paragraphs=[
        ("torch is not installed, so this stage cannot run. Install the deep extra: pip install -e '.[deep]' "
         "-c constraints.txt (CPU torch), then rerun policylab tour.")])


def stage_actor_critic(out, cfg, args, summary):
    title = "4. Actor-critic: the lecture's one-step update on CartPole-v1"
    missing = _torch_missing(title, summary, "actor_critic")
    if missing:
        return missing
    import torch

    from policylab.deep import ActorCritic
    from policylab.figures.report import Section

    torch.set_num_threads(1)
    agent = ActorCritic("CartPole-v1", seed=args.seed, n_envs=8)
    before = agent.evaluate(episodes=10).mean
    agent.learn(cfg.ac_steps, progress_bar=True)
    ev = agent.evaluate(episodes=10)
    summary["actor_critic"] = {"steps": cfg.ac_steps, "eval_before": before, "eval_after": ev.mean}
    _say(f"  actor-critic {cfg.ac_steps} steps: evaluation return {before:.1f} → {ev.mean:.1f}")
    status, crit = _verdict(ev.mean >= cfg.ac_target, f"evaluation return {before:.1f} before → {ev.mean:.1f} after "
                            f"{cfg.ac_steps:,} steps ≥ {cfg.ac_target:g}")
    return Section(title, status, criterion=crit, paragraphs=[
        ("Lecture §6.3, after every step: δ_t = r + γV_w(s') − V_w(s); critic w ← w + α_w δ_t ∇V_w(s); actor "
         "θ ← θ + α_θ δ_t ∇log π_θ(a|s) — losses.actor_critic_loss, one optimizer step per transition (8 envs "
         "side by side). Evaluation: 10 greedy episodes, 500 is the maximum.")],
        tables=[("evaluation (10 episodes, greedy)", ["env steps", "mean return before", "after", "std after"],
                 [(cfg.ac_steps, before, ev.mean, ev.std)])])


def stage_ppo(out, cfg, args, summary):
    title = "5. PPO solves CartPole-v1 on every seed"
    missing = _torch_missing(title, summary, "ppo")
    if missing:
        return missing
    import torch

    from policylab.deep import PPO
    from policylab.deep.config import load_preset
    from policylab.deep.vector_cartpole import VectorCartPole
    from policylab.figures.curves import learning_curves
    from policylab.figures.report import Section

    torch.set_num_threads(1)
    hp = load_preset("CartPole-v1", "ppo")
    rows, dirs, solved, evals_by_seed = [], [], [], {}
    for seed in cfg.ppo_seeds:
        seed = args.seed + seed
        run_dir = out / "runs" / f"ppo-cartpole-s{seed}"
        if (run_dir / "progress.csv").exists():
            (run_dir / "progress.csv").unlink()            # a rerun starts a fresh log
        evals = []

        def check(agent, metrics, evals=evals):            # evaluate every 5k steps; stop once solved
            if agent.num_steps >= 5_000 * (len(evals) + 1):
                evals.append((agent.num_steps, agent.evaluate(episodes=10).mean))
                metrics["eval/mean_return"] = evals[-1][1]
                return evals[-1][1] < PPO_SOLVED
            return True

        t0 = time.perf_counter()
        agent = PPO(VectorCartPole(hp["n_envs"], seed=seed), seed=seed, backend="numpy", **hp)
        agent.learn(cfg.ppo_max_steps, progress_bar=True, log_dir=run_dir, tensorboard=False, callback=check)
        ev = agent.evaluate(episodes=10)
        ok = ev.mean >= PPO_SOLVED
        solved.append(ok)
        rows.append((seed, agent.num_steps, ev.mean, ev.std, round(time.perf_counter() - t0, 1), "yes" if ok else "NO"))
        dirs.append(run_dir)
        if not evals or evals[-1][0] != agent.num_steps:
            evals.append((agent.num_steps, ev.mean))       # the final evaluation, unless it was the stopping one
        evals_by_seed[seed] = evals
        _say(f"  PPO seed {seed}: {agent.num_steps} steps, evaluation return {ev.mean:.1f} ± {ev.std:.1f}")
    # each seed stops once solved, so runs end at different steps: the curve covers their common range
    curves = learning_curves(dirs, "charts/episodic_return", agg="iqm", min_overlap=0.0)
    figure = _ppo_figure(out / "ppo_cartpole_curves", evals_by_seed, curves)
    summary["ppo"] = {"seeds": [r[0] for r in rows], "steps": [r[1] for r in rows], "eval_mean": [r[2] for r in rows]}
    status, crit = _verdict(all(solved), f"{sum(solved)}/{len(solved)} seeds reach a 10-episode evaluation mean ≥ "
                            f"{PPO_SOLVED:g} (of 500) within {cfg.ppo_max_steps:,} steps")
    return Section(title, status, criterion=crit, paragraphs=[
        ("policylab.deep.PPO with the bundled rl-zoo preset (8 envs × 32 steps, 20 epochs, lr and clip annealed), "
         "backend='numpy' (the hand-written gradient of losses.ppo_clip_loss) on the numba VectorCartPole; "
         "training stops at the first evaluation (every 5,000 steps) ≥ 475. Left: each seed's greedy evaluation "
         "(what the criterion judges); right: the IQM over seeds of the episodic return while training (the "
         "policy samples its actions, so it scores below its greedy evaluation) with a 95% stratified-bootstrap "
         "band, over the steps every seed ran (policylab plot).")],
        tables=[("evaluation after training (10 greedy episodes)",
                 ["seed", "env steps", "mean return", "std", "seconds", "solved"], rows)],
        images=[(figure, "PPO on CartPole-v1: greedy evaluations per seed (left), training return IQM (right)")])


def _ppo_figure(stem, evals_by_seed, curves):
    """Two panels: each seed's greedy evaluations against the 475 line, and the training-return IQM."""
    from policylab.figures import _draw as d

    fig = d.new_figure(10.0, 4.0)
    ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for seed, evals in evals_by_seed.items():
        steps, means = zip(*evals)
        ax.plot(steps, means, marker="o", lw=1.5, label=f"seed {seed}")
    ax.axhline(PPO_SOLVED, color="#b3261e", ls="--", lw=1.2, label=f"solved: {PPO_SOLVED:g}")
    ax.set(xlabel="environment steps", ylabel="mean return, 10 greedy episodes", ylim=(0, 520),
           title="greedy evaluation every 5,000 steps (stops once solved)")
    for g in curves.groups.values():
        n = len(g["runs"])
        (line,) = bx.plot(g["grid"], g["point"], lw=1.8, label=f"IQM of {n} seed{'s' if n > 1 else ''}")
        bx.fill_between(g["grid"], g["low"], g["high"], color=line.get_color(), alpha=0.25, lw=0, label="95% CI")
    bx.set(xlabel="environment steps", ylabel="charts/episodic_return (sampled actions)", ylim=(0, 520),
           title="episodic return while training (steps every seed ran)")
    for a in (ax, bx):
        a.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:g}k")
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="lower right")
        a.title.set_fontsize(10)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    return d.finish(fig, stem.name, "", "", None, stem.parent).files[0]


def stage_llm(out, cfg, args, summary):
    import copy
    import importlib.util

    from policylab.figures.report import Section

    title = "6. Language models: SFT, then GRPO and DPO on a tiny offline Llama"
    if args.no_llm:
        summary["llm"] = "skipped (--no-llm)"
        return Section(title, "unavailable", paragraphs=["Skipped with --no-llm."])
    if importlib.util.find_spec("transformers") is None:
        summary["llm"] = "unavailable: transformers not installed"
        return Section(title, "unavailable", paragraphs=[
            ("transformers is not installed, so this stage cannot run. Install the llm extra: "
             "pip install -e '.[llm]' (from a checkout) or pip install 'policylab[llm]', then rerun policylab tour.")])
    import torch

    from policylab.llm import (
        DPOConfig,
        DPOTrainer,
        GRPOConfig,
        GRPOTrainer,
        SFTConfig,
        SFTTrainer,
        accuracy,
        make_char_tokenizer,
        make_tiny_llama,
    )
    from policylab.llm.task import dpo_records, make_addition_problems, sft_records

    torch.set_num_threads(1)
    seed = args.seed
    train, test = make_addition_problems(seed=seed)
    tok = make_char_tokenizer()
    base = make_tiny_llama(len(tok), seed=seed)
    SFTTrainer(base, tok, SFTConfig(max_steps=cfg.sft_steps, batch_size=32, learning_rate=3e-3, seed=seed,
                                    output_dir=str(out / "llm" / "sft"), progress=True),
               sft_records(train, off_by_one=0.6, seed=seed)).train()
    acc_sft = accuracy(base, tok, test)
    _say(f"  SFT {cfg.sft_steps} steps on a noisy teacher (60% answers a+b+1): held-out accuracy {acc_sft:.3f}")

    grpo_model = copy.deepcopy(base)
    gcfg = GRPOConfig(max_steps=cfg.grpo_steps, batch_size=64, num_generations=8, max_completion_length=4,
                      learning_rate=1e-3, seed=seed, output_dir=str(out / "llm" / "grpo"), progress=True,
                      reward_funcs=["correctness"])
    history = GRPOTrainer(grpo_model, tok, gcfg, train).train()
    acc_grpo = accuracy(grpo_model, tok, test)
    k = max(1, len(history) // 10)
    r_first = sum(h["rewards/mean"] for h in history[:k]) / k
    r_last = sum(h["rewards/mean"] for h in history[-k:]) / k
    _say(f"  GRPO {cfg.grpo_steps} steps: held-out accuracy {acc_sft:.3f} → {acc_grpo:.3f}; "
         f"training reward {r_first:.2f} → {r_last:.2f}")

    dpo_model = copy.deepcopy(base)
    held_out = dpo_records(test, seed=seed + 1)
    dcfg = DPOConfig(max_steps=cfg.dpo_steps, batch_size=16, learning_rate=3e-4, beta=0.1, seed=seed,
                     precompute_ref_logps=True, output_dir=str(out / "llm" / "dpo"), progress=True)
    trainer = DPOTrainer(dpo_model, tok, dcfg, dpo_records(train, seed=seed))

    def preference_accuracy():  # held-out pairs with log π(correct) > log π(off by one)
        data = trainer.tokenize(held_out, [f"test {i}" for i in range(len(held_out))])
        with torch.no_grad():
            chosen, rejected, _, _ = trainer.logps(dpo_model, range(len(held_out)), data=data)
        return (chosen > rejected).float().mean().item()

    pref_before = preference_accuracy()
    trainer.train()
    pref_after = preference_accuracy()
    acc_dpo = accuracy(dpo_model, tok, test)
    _say(f"  DPO {cfg.dpo_steps} steps: held-out preference accuracy {pref_before:.3f} → {pref_after:.3f}; "
         f"held-out accuracy {acc_sft:.3f} → {acc_dpo:.3f}")
    summary["llm"] = {"sft_accuracy": acc_sft, "grpo_accuracy": acc_grpo, "grpo_reward": [r_first, r_last],
                      "dpo_preference_accuracy": [pref_before, pref_after], "dpo_accuracy": acc_dpo}
    ok_grpo = acc_grpo - acc_sft >= GRPO_MARGIN
    ok_dpo = pref_after - pref_before >= 0.05
    status, crit = _verdict(ok_grpo and ok_dpo, (
        f"GRPO raises held-out accuracy {acc_sft:.3f} → {acc_grpo:.3f} (+{acc_grpo - acc_sft:.3f}, needs ≥ "
        f"{GRPO_MARGIN:g}); DPO raises held-out preference accuracy {pref_before:.3f} → {pref_after:.3f} "
        f"(needs ≥ +0.05)"))
    return Section(title, status, criterion=crit, paragraphs=[
        ("A 2-layer character-level Llama (≈95k parameters, built in code, no download) learns sums 'a+b=' of a "
         "two-digit and a one-digit number (800 training / 200 held-out pairs). SFT copies a noisy teacher that "
         "answers a+b+1 60% of the time, which leaves a weak policy. From that model, GRPO (8 completions per "
         "prompt, reward 1 for the right answer, Â_i = r_i − mean(r), lecture §7.2) and DPO (correct answer "
         "preferred over a+b±1, lecture §7.3) each train a copy; accuracy is greedy decoding on held-out prompts.")],
        tables=[("held-out results", ["model", "greedy accuracy", "preference accuracy"],
                 [("after SFT", acc_sft, pref_before), (f"SFT + GRPO ({cfg.grpo_steps} steps)", acc_grpo, "–"),
                  (f"SFT + DPO ({cfg.dpo_steps} steps)", acc_dpo, pref_after)]),
                ("GRPO training reward (mean over the first and last 10% of steps)", ["first", "last"],
                 [(r_first, r_last)])])


def stage_figures(out, cfg, args, summary):
    from policylab.figures import render_all
    from policylab.figures.report import Section

    results = render_all(out / "figures", progress=True)
    summary["figures"] = [str(f) for r in results for f in r.files]
    n = sum(1 for r in results for f in r.files if f.stat().st_size > 0)
    status, crit = _verdict(n == 2 * len(results) == 12, f"{n} of 12 files written (6 figures × PNG + SVG)")
    return Section("7. The lecture's figures", status, criterion=crit, paragraphs=[
        "Each figure is computed by the library (policylab figures --out DIR writes the same PNG + SVG files)."],
        images=[(r.png, f"{r.title}. {r.caption}") for r in results])


STAGES = [("planning", stage_planning), ("q-learning", stage_q_learning), ("reinforce", stage_reinforce),
          ("actor-critic", stage_actor_critic), ("ppo", stage_ppo), ("llm", stage_llm), ("figures", stage_figures)]


def run(args) -> int:
    from policylab.errors import InputError
    from policylab.figures.report import Section, write_html

    if not 0 <= args.seed < 2 ** 31:
        raise InputError(f"--seed must be in [0, 2**31), got {args.seed}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
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
            section = Section(f"{i}. {name}", "failed", criterion=f"FAIL: the stage raised {type(exc).__name__}",
                              paragraphs=[f"{type(exc).__name__}: {exc}"], pre=traceback.format_exc())
        if section.status == "failed":
            failed.append(name)
        dt = time.perf_counter() - t0
        summary["stages"][name] = {"status": section.status, "seconds": round(dt, 2), "criterion": section.criterion}
        _say(f"[{i}/{len(STAGES)}] {name}: {section.status} ({dt:.1f} s){'  ' + section.criterion if section.criterion else ''}")
        sections.append(section)
    verdict = (f"{len(failed)} of {len(STAGES)} stages missed their criterion: {', '.join(failed)}." if failed else
               "Every stage met its criterion.")
    index = write_html(out / "index.html", "policylab tour: from MDPs to GRPO and DPO", sections,
                       intro="Every number and figure on this page was computed by policylab while the tour ran "
                             f"({'quick' if args.quick else 'full'} mode, seed {args.seed}, "
                             f"{time.perf_counter() - t_all:.0f} s). {verdict}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    _say(f"wrote {index} and {out / 'summary.json'}")
    if failed:
        _say(f"failed stages: {', '.join(failed)} (see {index})")
    return 1 if failed else 0
