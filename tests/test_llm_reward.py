"""Reward models (issue 13 item 4): bradley_terry_loss against its formula, RewardTrainer one step = TRL 1.16's
RewardTrainer, a trained reward model as a GRPO reward (rows checked before it loads; the caller's model
left as given), a reward model started from a causal LM's folder, the CLI, bad margins."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from policylab.errors import DataError, InputError
from policylab.llm import (
    RewardConfig,
    RewardModelReward,
    RewardTrainer,
    make_char_tokenizer,
    make_tiny_llama,
    make_tiny_reward_model,
)
from policylab.llm.grpo import GRPOConfig, GRPOTrainer
from policylab.llm.task import correctness_reward, dpo_records, make_addition_problems
from policylab.losses import bradley_terry_loss

torch.set_num_threads(1)
TRAIN, _ = make_addition_problems(max_a=9, max_b=9, test_fraction=0.2, seed=0)
ROWS = [{"prompt": f"{a}+{b}=", "chosen": f"{a + b}", "rejected": f"{a + b + d}"}
        for a, b, d in [(1, 2, 1), (3, 4, -2), (10, 5, 10), (7, 7, 1), (12, 30, -1), (2, 2, 100), (9, 1, 2), (40, 2, -10)]]


def test_bradley_terry_loss_is_its_formula():
    rw, rl = torch.tensor([1.0, -0.5, 3.0]), torch.tensor([0.0, 0.5, 3.5])
    m = torch.tensor([0.5, 0.0, 1.0])
    expected = -sum(math.log(1 / (1 + math.exp(-(w - l)))) for w, l in zip(rw.tolist(), rl.tolist())) / 3
    assert bradley_terry_loss(rw, rl).item() == pytest.approx(expected, rel=1e-6)
    expected_m = -sum(math.log(1 / (1 + math.exp(-(w - l - g)))) for w, l, g in zip(rw.tolist(), rl.tolist(), m.tolist())) / 3
    assert bradley_terry_loss(rw, rl, m).item() == pytest.approx(expected_m, rel=1e-6)
    assert bradley_terry_loss(rw, rl, 0.5).item() == pytest.approx(
        bradley_terry_loss(rw, rl, torch.full((3,), 0.5)).item())
    # gradient: ∂L/∂r_w = −σ(−(r_w − r_l))/B
    rw.requires_grad_(True)
    bradley_terry_loss(rw, rl).backward()
    torch.testing.assert_close(rw.grad, -torch.sigmoid(-(rw.detach() - rl)) / 3)
    with pytest.raises(ValueError, match="rejected_rewards has shape"):
        bradley_terry_loss(rw, rl[:2])


def test_reward_trainer_one_step_matches_trl(tmp_path):
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from test_llm_parity_trainers import LR, PARAM_RTOL, _capture_grads, _trl_args

    tok = make_char_tokenizer()
    m0 = make_tiny_reward_model(len(tok), seed=0)
    m0.config.pad_token_id = tok.pad_token_id
    ours_model, trl_model = copy.deepcopy(m0), copy.deepcopy(m0)
    ours_grads, trl_grads = _capture_grads(ours_model), _capture_grads(trl_model)
    trl_trainer = trl.RewardTrainer(
        model=trl_model, processing_class=tok, train_dataset=datasets.Dataset.from_list(ROWS),
        args=trl.RewardConfig(**_trl_args(tmp_path / "trl"), per_device_train_batch_size=8, max_steps=1,
                              max_grad_norm=1.0),
    )
    trl_trainer.train()
    cfg = RewardConfig(output_dir=str(tmp_path / "ours"), max_steps=1, batch_size=8, learning_rate=LR,
                       max_grad_norm=1.0, progress=False)
    history = RewardTrainer(ours_model, tok, cfg, ROWS).train()
    trl_log = trl_trainer.state.log_history[0]
    assert history[0]["loss"] == pytest.approx(trl_log["loss"], abs=1e-4)
    assert history[0]["accuracy"] == pytest.approx(trl_log["accuracy"])
    assert history[0]["grad_norm"] == pytest.approx(trl_log["grad_norm"], rel=1e-4)
    trl_params = dict(trl_model.named_parameters())
    for name, p in ours_model.named_parameters():
        g_ours, g_trl = ours_grads[name], trl_grads[name]
        scale = max(g_trl.abs().max().item(), 1e-12)
        assert (g_ours - g_trl).abs().max().item() <= 1e-4 * scale, name
        # Adam moves a weight by ≈ lr·g/(|g| + ε): where |g| ~ ε = 1e-8 (here 1e-9 in the deep MLP rows)
        # that ratio is float noise on both sides, so parameters are compared where |g| ≥ 100 ε
        diff = (p.detach() - trl_params[name].detach()).abs()
        sure = torch.maximum(g_ours.abs(), g_trl.abs()) >= 1e-6
        assert diff[sure].max().item() <= PARAM_RTOL * LR if sure.any() else True, name
        assert diff.max().item() <= 2 * LR, name
    assert max((p - q).abs().max().item() for p, q in zip(ours_model.parameters(), m0.parameters())) > 0.5 * LR


def test_trained_reward_model_ranks_pairs_and_serves_as_a_grpo_reward(tmp_path):
    tok = make_char_tokenizer()
    cfg = RewardConfig(output_dir=str(tmp_path / "rm"), max_steps=200, batch_size=16, learning_rate=1e-3,
                       progress=False)
    rows = dpo_records(TRAIN)
    history = RewardTrainer("tiny", tok, cfg, rows).train()
    assert history[-1]["loss"] < history[0]["loss"]
    scorer = RewardModelReward(tmp_path / "rm")  # the run folder: its newest verified checkpoint
    good = scorer([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    bad = scorer([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    assert sum(g > b for g, b in zip(good, bad)) / len(rows) >= 0.7  # training pairs ranked (0.8 measured)
    gcfg = GRPOConfig(max_steps=1, batch_size=8, num_generations=4, max_completion_length=3, progress=False,
                      output_dir=str(tmp_path / "g"), reward_model=str(tmp_path / "rm"), reward_weights=[1.0, 0.5])
    trainer = GRPOTrainer("tiny", tok, gcfg, TRAIN, reward_funcs=[correctness_reward])
    stats = trainer.train()[-1]
    assert "rewards/reward_model" in stats and "rewards/correctness_reward" in stats
    expected = stats["rewards/correctness_reward"] + 0.5 * stats["rewards/reward_model"]
    assert stats["rewards/mean"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_bad_margin_column_names_the_row(tmp_path):
    rows = [dict(r, margin=1.0) for r in ROWS]
    rows[3]["margin"] = "big"
    with pytest.raises(DataError, match="record 3: field 'margin' must be a finite number"):
        RewardTrainer("tiny", make_char_tokenizer(), RewardConfig(output_dir=str(tmp_path)), rows)


def test_cli_reward(tmp_path, capsys):
    from policylab.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "rm"
    assert main(["llm", "reward", "--model", "tiny", "--train_file", str(data), "--output_dir", str(out),
                 "--max_steps", "2", "--batch_size", "4", "--progress", "false"]) == 0
    assert (out / "checkpoint-2" / "manifest.json").is_file()
    assert main(["llm", "reward", "--model", "tiny", "--train_file", str(data), "--learning_rate", "nan"]) == 2


def test_reward_model_reward_scores_each_sequence_and_leaves_the_callers_model_as_given():
    tok = make_char_tokenizer()
    rm = make_tiny_reward_model(len(tok), seed=3)
    rm.config.pad_token_id = None
    rm.train()
    prompts, completions = ["1+2=", "10+5=", "7+7="], ["3", "15", "1400"]  # ragged: padding in the batch
    scores = RewardModelReward(rm, tok, batch_size=2)(prompts, completions)
    assert rm.training and rm.config.pad_token_id is None  # restored after the call
    assert all(p.requires_grad for p in rm.parameters())
    rm.eval()
    with torch.no_grad():  # reference: each sequence alone, unpadded, its score at the last token (EOS)
        alone = [rm(input_ids=torch.tensor([tok(p + c)["input_ids"] + [tok.eos_token_id]])).logits[0, 0].item()
                 for p, c in zip(prompts, completions)]
    assert scores == pytest.approx(alone, rel=1e-5, abs=1e-6)


def test_grpo_checks_rows_before_loading_the_reward_model(tmp_path, monkeypatch):
    import policylab.llm.reward
    import policylab.llm.trainer

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the rows were checked")

    monkeypatch.setattr(policylab.llm.trainer, "resolve_model", no_model)
    monkeypatch.setattr(policylab.llm.reward, "resolve_model", no_model)
    cfg = GRPOConfig(max_steps=1, batch_size=4, num_generations=4, max_completion_length=4, progress=False,
                     output_dir=str(tmp_path / "g"),
                     reward_model=str(tmp_path / "rm"))
    with pytest.raises(InputError, match="record 1: missing field 'prompt'"):
        GRPOTrainer("tiny", make_char_tokenizer(), cfg, [{"prompt": "1+1=", "answer": "2"}, {"question": "2+2="}])
    monkeypatch.undo()  # the policy may load; the reward model not before the reward's columns are checked
    monkeypatch.setattr(policylab.llm.reward, "resolve_model", no_model)
    with pytest.raises(InputError, match="record 1: missing column 'answer' needed by reward correctness_reward"):
        GRPOTrainer("tiny", make_char_tokenizer(), cfg, [{"prompt": "1+1=", "answer": "2"}, {"prompt": "2+2="}])


def test_reward_model_from_a_causal_lm_folder_keeps_its_backbone(tmp_path):
    from policylab.llm.models import resolve_model

    tok = make_char_tokenizer()
    policy = make_tiny_llama(len(tok), seed=1)
    policy.save_pretrained(tmp_path / "sft")
    tok.save_pretrained(tmp_path / "sft")
    rm, _ = resolve_model(tmp_path / "sft", kind="reward")
    assert rm.config.num_labels == 1 and rm.score.out_features == 1  # LlamaConfig's default would be 2
    backbone = dict(policy.model.named_parameters())
    for name, p in rm.model.named_parameters():
        torch.testing.assert_close(p, backbone[name], rtol=0, atol=0)
    scores = RewardModelReward(rm, tok)(["1+2=", "3+4="], ["3", "7"])
    assert len(scores) == 2 and all(math.isfinite(x) for x in scores)


def test_policy_preference_records_pair_the_answer_with_the_policys_wrong_samples(monkeypatch):
    from policylab.llm import task

    problems = [{"prompt": "1+2=", "answer": "3"}, {"prompt": "4+4=", "answer": "8"}]
    fake = [["3", "4", " 4", "", "13", "3 "], ["8", "8"]]  # the second prompt: always right → no pair
    monkeypatch.setattr(task, "sample_answers", lambda model, tok, rows, n, *a, **k: fake)
    rows = task.policy_preference_records(None, None, problems, 6, offsets=None)
    assert rows == [{"prompt": "1+2=", "chosen": "3", "rejected": "4"}, {"prompt": "1+2=", "chosen": "3", "rejected": "13"}]
    with_offsets = task.policy_preference_records(None, None, problems, 6, seed=5)
    assert with_offsets == rows + dpo_records(problems, seed=5)
    monkeypatch.undo()
    tok = make_char_tokenizer()
    policy = make_tiny_llama(len(tok), seed=0)  # untrained: wrong almost always
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = task.policy_preference_records(policy, tok, TRAIN[:10], 4, seed=1, offsets=None)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is left alone
    assert a == task.policy_preference_records(policy, tok, TRAIN[:10], 4, seed=1, offsets=None)  # seeded
    assert a != task.policy_preference_records(policy, tok, TRAIN[:10], 4, seed=2, offsets=None)
    answers = {p["prompt"]: p["answer"] for p in TRAIN[:10]}
    assert 10 <= len(a) <= 40 and all(r["chosen"] == answers[r["prompt"]] != r["rejected"] and r["rejected"] for r in a)
