"""Synthetic-task improvements (slow): a short SFT on a noisy teacher gives a weak policy; GRPO with the
correctness reward raises held-out greedy accuracy; DPO on correct-vs-off-by-one pairs raises held-out
preference accuracy and the implicit reward margin; a reward model trained on the same correct-vs-off-by-one
pairs ranks held-out pairs. Fixed seeds; thresholds measured, then set with
margin (measured values in the comments, this machine, torch 2.13 CPU)."""

import copy

import pytest
import torch

from policylab.llm import sft
from policylab.llm.dpo import DPOConfig, DPOTrainer
from policylab.llm.grpo import GRPOConfig, GRPOTrainer
from policylab.llm.reward import RewardConfig, RewardModelReward, RewardTrainer
from policylab.llm.task import (
    accuracy,
    dpo_records,
    make_addition_problems,
    policy_preference_records,
    sft_records,
)
from policylab.llm.tiny import make_char_tokenizer, make_tiny_llama, make_tiny_reward_model

pytestmark = pytest.mark.slow
RM_STEPS = 3000  # reward-model steps, SFT-initialized (at 1500, seeds 1 and 3 ranked held-out mistakes at 0.75)
RM_ACC_MIN = 0.8  # held-out ranking of the SFT policy's mistakes below the answer, measured 0.997 (seed 0)
GAIN_MIN = 0.15  # GRPO on the reward model, held-out accuracy gain: measured +0.395 (0.365 -> 0.760, seed 0);
# the same recipe on SFT/RM/GRPO seeds 1, 3: +0.495, +0.505 (checker-reward GRPO, same settings: +0.48, +0.53)
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def weak_policy(tmp_path_factory):
    train, test = make_addition_problems(max_a=99, max_b=9, test_fraction=0.2, seed=0)  # 800 / 200 pairs
    tok = make_char_tokenizer()
    model = make_tiny_llama(len(tok), seed=0)
    out = tmp_path_factory.mktemp("sft")
    sft(model, tok, sft_records(train, off_by_one=0.6, seed=0), max_steps=500, batch_size=32,
        learning_rate=3e-3, seed=0, output_dir=str(out))
    return model, tok, train, test, out  # out: the SFT run folder (its checkpoint-500)


def test_grpo_raises_heldout_accuracy(weak_policy, tmp_path):
    sft_model, tok, train, test, _ = weak_policy
    model = copy.deepcopy(sft_model)
    before = accuracy(model, tok, test)
    cfg = GRPOConfig(max_steps=150, batch_size=64, num_generations=8, max_completion_length=4, learning_rate=1e-3,
                     seed=0, output_dir=str(tmp_path), progress=False, reward_funcs=["correctness"])
    history = GRPOTrainer(model, tok, cfg, train).train()
    after = accuracy(model, tok, test)
    print(f"GRPO held-out accuracy {before:.3f} -> {after:.3f}")
    assert before <= 0.45  # the SFT policy is weak (measured 0.365)
    assert after - before >= 0.15  # measured +0.260 (0.365 -> 0.625), the tour's 150 steps
    first = sum(h["rewards/mean"] for h in history[:10]) / 10
    last = sum(h["rewards/mean"] for h in history[-10:]) / 10
    assert last > first + 0.15  # training reward rises too


def test_dpo_raises_preference_accuracy_and_margin(weak_policy, tmp_path):
    sft_model, tok, train, test, _ = weak_policy
    model = copy.deepcopy(sft_model)
    held_out = dpo_records(test, seed=1)
    acc_before = accuracy(model, tok, test)
    cfg = DPOConfig(max_steps=200, batch_size=16, learning_rate=3e-4, beta=0.1, seed=0, precompute_ref_logps=True,
                    output_dir=str(tmp_path), progress=False)
    trainer = DPOTrainer(model, tok, cfg, dpo_records(train, seed=0))

    def likelihood_preference():  # fraction of held-out pairs with log π(y_w) > log π(y_l)
        data = trainer.tokenize(held_out, [f"test {i}" for i in range(len(held_out))])
        with torch.no_grad():
            chosen, rejected, _, _ = trainer.logps(model, range(len(held_out)), data=data)
        return (chosen > rejected).float().mean().item()

    pref_before = likelihood_preference()
    trainer.train()
    pref_after = likelihood_preference()
    stats = trainer.evaluate(held_out, ref_model=sft_model)
    acc_after = accuracy(model, tok, test)
    print(f"DPO held-out likelihood preference {pref_before:.3f} -> {pref_after:.3f}; "
          f"greedy accuracy {acc_before:.3f} -> {acc_after:.3f}; {stats}")
    assert pref_before <= 0.8  # measured 0.730 (the policy often prefers a+b+1; a+b−1 it rarely says)
    assert pref_after - pref_before >= 0.05  # measured 0.730 -> 0.845 (the tour's 200 steps and threshold)
    assert stats["rewards/accuracies"] >= 0.7  # implicit-reward accuracy vs π_ref, measured 0.845 (0 before: ties)
    assert stats["rewards/margins"] >= 0.1  # mean β-scaled margin, measured 0.327 (0 before)
    assert acc_after - acc_before >= 0.2  # greedy held-out accuracy, measured 0.365 -> 0.685


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    """A reward model trained on correct-vs-(a+b±1) pairs of the train split, saved as a run folder.

    Telling a+b from a+b±1 means doing the addition: the 2-layer hidden-64 tiny model (89k parameters)
    stays at chance (loss 0.67, held-out accuracy 0.50 after 600 steps at lr 1e-3 or 3e-3), while
    4 layers × hidden 128 (670k parameters) learns it (loss 3e-5, held-out accuracy 1.0 after 600 steps;
    0.97 after the 400 here). It is not a usable GRPO reward on this task: GRPO with it alone drives
    held-out accuracy from 0.365 to 0.005 ("66", "688": completions unlike its training pairs, scored
    high — reward hacking); with a KL term (β 0.04, lr 3e-4) accuracy stays at 0.36. The reward model
    that works is trained on the policy's own mistakes (the last test)."""
    train, test = make_addition_problems(max_a=99, max_b=9, test_fraction=0.2, seed=0)
    tok = make_char_tokenizer()
    model = make_tiny_reward_model(len(tok), hidden=128, layers=4, heads=4, intermediate=256, seed=0)
    out = tmp_path_factory.mktemp("rm")
    cfg = RewardConfig(output_dir=str(out), max_steps=400, batch_size=32, learning_rate=1e-3, lr_scheduler="linear",
                       warmup_steps=40, seed=0, progress=False)
    history = RewardTrainer(model, tok, cfg, dpo_records(train, seed=0)).train()
    return out, history, dpo_records(test, seed=1)


def test_reward_model_ranks_heldout_pairs(reward_model):
    out, history, held_out = reward_model
    scorer = RewardModelReward(out)  # the run folder: its newest verified checkpoint
    good = scorer([r["prompt"] for r in held_out], [r["chosen"] for r in held_out])
    bad = scorer([r["prompt"] for r in held_out], [r["rejected"] for r in held_out])
    acc = sum(g > b for g, b in zip(good, bad)) / len(held_out)
    print(f"reward model held-out pair accuracy {acc:.3f}; loss {history[0]['loss']:.3f} -> {history[-1]['loss']:.3g}")
    assert acc >= 0.8  # measured 0.970 (loss 0.692 -> 0.065)
    assert sum(h["loss"] for h in history[-20:]) / 20 < 0.3



def test_grpo_with_a_reward_model_from_policy_samples_raises_heldout_accuracy(weak_policy, tmp_path):
    """RLHF as practitioners run it, with no access to the checker during GRPO: sample 8 answers per train
    prompt from the SFT policy (temperature 1.5: wider than GRPO will sample, so the reward model also
    sees the odd strings a drifting policy tries), pair the correct answer with each distinct wrong sample (+ one a+b±1 pair
    per prompt), train a reward model initialized from the SFT checkpoint (InstructGPT's recipe), then
    GRPO on the reward model alone with a KL term (β 0.1) keeping the policy where the reward model was
    trained. Without the policy's own samples or without the KL term the policy exploits the reward model
    (see the ``reward_model`` fixture)."""
    sft_model, tok, train, test, sft_dir = weak_policy
    pairs = policy_preference_records(sft_model, tok, train, num_samples=8, temperature=1.5, seed=0)
    rcfg = RewardConfig(output_dir=str(tmp_path / "rm"), max_steps=RM_STEPS, batch_size=32, learning_rate=1e-3,
                        lr_scheduler="linear", warmup_steps=40, seed=0, progress=False, report_to="none")
    RewardTrainer(str(sft_dir), tok, rcfg, pairs).train()  # the SFT folder: its backbone, a fresh score head
    held_out = policy_preference_records(sft_model, tok, test, num_samples=4, seed=1, offsets=None)
    scorer = RewardModelReward(tmp_path / "rm")
    good = scorer([r["prompt"] for r in held_out], [r["chosen"] for r in held_out])
    bad = scorer([r["prompt"] for r in held_out], [r["rejected"] for r in held_out])
    rm_acc = sum(g > b for g, b in zip(good, bad)) / len(held_out)
    model = copy.deepcopy(sft_model)
    before = accuracy(model, tok, test)
    cfg = GRPOConfig(max_steps=100, batch_size=64, num_generations=8, max_completion_length=4, learning_rate=3e-4,
                     beta=0.1, seed=0, output_dir=str(tmp_path / "grpo"), progress=False, report_to="none",
                     reward_funcs=[], reward_model=str(tmp_path / "rm"))
    history = GRPOTrainer(model, tok, cfg, train).train()
    after = accuracy(model, tok, test)
    print(f"{len(pairs)} pairs; RM ranks the SFT policy's held-out mistakes below the answer {rm_acc:.3f}; "
          f"GRPO on the RM: held-out accuracy {before:.3f} -> {after:.3f}")
    assert set(history[0]) >= {"rewards/reward_model", "kl"} and "rewards/correctness_reward" not in history[0]
    assert len(test) >= 200
    assert rm_acc >= RM_ACC_MIN
    assert after - before >= GAIN_MIN
