"""Conversational rows through every trainer, implicit prompts, --split, and the bad inputs of issue 13
(a dataset missing a column, a chat row without a chat template, LoRA target modules that match nothing):
one clear error naming the field, raised before the model's weights are built or read where possible, and
from the CLI one line with exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from policylab.errors import ConfigError, InputError
from policylab.llm import tiny
from policylab.llm.dpo import DPOConfig, DPOTrainer
from policylab.llm.grpo import GRPOConfig, GRPOTrainer
from policylab.llm.reward import RewardConfig, RewardModelReward, RewardTrainer
from policylab.llm.supervised import SFTConfig, SFTTrainer
from policylab.llm.task import correctness_reward, make_addition_problems

torch.set_num_threads(1)
TRAIN, _ = make_addition_problems(max_a=9, max_b=9, test_fraction=0.2, seed=0)
CHAT_DPO = [{"prompt": [{"role": "user", "content": p["prompt"]}],
             "chosen": [{"role": "assistant", "content": p["answer"]}],
             "rejected": [{"role": "assistant", "content": str(int(p["answer"]) + 1)}]} for p in TRAIN[:16]]


def cfg(kind, tmp_path, **kw):
    base = {"output_dir": str(tmp_path / kind.__name__), "max_steps": 2, "batch_size": 4, "progress": False,
            "learning_rate": 1e-3}
    return kind(**{**base, **kw})


@pytest.fixture
def chat_tok():
    return tiny.make_char_tokenizer(chat_template=True)


def test_every_trainer_trains_on_conversations(tmp_path, chat_tok):
    implicit = [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in CHAT_DPO]
    explicit = DPOTrainer("tiny", chat_tok, cfg(DPOConfig, tmp_path / "e"), CHAT_DPO)
    hidden = DPOTrainer("tiny", chat_tok, cfg(DPOConfig, tmp_path / "i"), implicit)
    assert hidden.data == explicit.data  # the implicit prompt is the explicit one
    assert chat_tok.decode(explicit.data[1][0]) == CHAT_DPO[0]["chosen"][0]["content"] + "<eos>"
    h_e, h_i = explicit.train(), hidden.train()
    assert h_e[-1]["loss"] == h_i[-1]["loss"] and h_e[-1]["rewards/margins"] != 0.0

    sft = [{"messages": r["prompt"] + r["chosen"]} for r in CHAT_DPO]
    trainer = SFTTrainer("tiny", chat_tok, cfg(SFTConfig, tmp_path), sft)
    assert len(trainer.prompt_ids[0]) == 1  # language-modeling row: every token after the first is trained on
    history = trainer.train()
    assert history[0]["num_tokens"] == sum(len(chat_tok.apply_chat_template(r["messages"])["input_ids"]) for r in
                                           [sft[i] for i in trainer.batch_indices(0)])

    seen = []

    def reward(prompts, completions, answer, **_):
        seen.extend(completions)
        return correctness_reward(prompts, completions, answer)

    rows = [{"prompt": [{"role": "user", "content": p["prompt"]}], "answer": p["answer"]} for p in TRAIN[:8]]
    GRPOTrainer("tiny", chat_tok, cfg(GRPOConfig, tmp_path, num_generations=4, max_completion_length=3), rows,
                reward_funcs=[reward]).train()
    assert seen and all(isinstance(c, list) and c[0]["role"] == "assistant" for c in seen)  # TRL's shape

    rm = RewardTrainer("tiny", chat_tok, cfg(RewardConfig, tmp_path), CHAT_DPO)
    rm.train()
    scorer = RewardModelReward(rm.model, chat_tok)
    by_text = scorer([r["prompt"] for r in CHAT_DPO[:4]], [r["chosen"][0]["content"] for r in CHAT_DPO[:4]])
    by_msgs = scorer([r["prompt"] for r in CHAT_DPO[:4]], [r["chosen"] for r in CHAT_DPO[:4]])
    r_w, _, _ = rm.rewards([0, 1, 2, 3])
    torch.testing.assert_close(torch.tensor(by_text), torch.tensor(by_msgs))
    torch.testing.assert_close(torch.tensor(by_msgs), r_w.detach(), rtol=1e-5, atol=1e-5)  # scored as trained


def test_split_field_selects_rows(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"prompt": p["prompt"], "completion": p["answer"]} for p in TRAIN[:10]]
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:3])})
    trainer = SFTTrainer("tiny", tiny.make_char_tokenizer(), cfg(SFTConfig, tmp_path, split="test"), dd)
    assert trainer.records == rows[:3]
    with pytest.raises(InputError, match="split='dev'"):
        SFTTrainer("tiny", tiny.make_char_tokenizer(), cfg(SFTConfig, tmp_path, split="dev"), dd)


def test_bad_data_fails_before_any_weights(tmp_path, monkeypatch, chat_tok):
    def no_model(*a, **k):
        raise AssertionError("the model was built before the data were checked")

    monkeypatch.setattr(tiny, "make_tiny_llama", no_model)
    plain = tiny.make_char_tokenizer()
    with pytest.raises(InputError, match="record 3: missing field 'rejected'"):
        DPOTrainer("tiny", plain, cfg(DPOConfig, tmp_path), CHAT_DPO[:3] + [{"prompt": "1+1=", "chosen": "2"}])
    with pytest.raises(InputError, match="record 0: field 'prompt' is a list of messages \\(conversational format\\) "
                                         "but the tokenizer has no chat template"):
        DPOTrainer("tiny", plain, cfg(DPOConfig, tmp_path), CHAT_DPO)
    with pytest.raises(InputError, match="record 1: field 'messages' is a list"):
        SFTTrainer("tiny", plain, cfg(SFTConfig, tmp_path), [{"prompt": "a", "completion": "b"},
                                                            {"messages": CHAT_DPO[0]["prompt"]}])
    model_dir = tmp_path / "m"  # a model folder: its tokenizer is read, its weights are not
    monkeypatch.undo()
    tiny.make_tiny_llama(len(plain)).save_pretrained(model_dir)
    plain.save_pretrained(model_dir)
    from policylab.llm import models

    monkeypatch.setattr(models, "load_pretrained", no_model)
    with pytest.raises(InputError, match="no chat template"):
        GRPOTrainer(str(model_dir), None, cfg(GRPOConfig, tmp_path, num_generations=4), [{"prompt": CHAT_DPO[0]["prompt"]}])


def test_lora_target_modules_that_match_nothing(tmp_path):
    pytest.importorskip("peft")
    with pytest.raises(ConfigError, match="lora_target_modules=\\['attn_q'\\]"):
        GRPOTrainer("tiny", tiny.make_char_tokenizer(), cfg(GRPOConfig, tmp_path, num_generations=4, use_peft=True,
                                                            lora_target_modules=["attn_q"]), TRAIN)


@pytest.mark.parametrize("case", ["missing-column", "chat-without-template", "lora-targets", "bad-split"])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, case):
    if case == "lora-targets":
        pytest.importorskip("peft")
    from policylab.cli import main

    rows = {"missing-column": [{"prompt": "1+1=", "chosen": "2"}], "chat-without-template": CHAT_DPO,
            "lora-targets": [{"prompt": "1+1=", "chosen": "2", "rejected": "3"}],
            "bad-split": [{"prompt": "1+1=", "chosen": "2", "rejected": "3"}]}[case]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    extra = {"lora-targets": ["--use_peft", "true", "--lora_target_modules", "attn_q"],
             "bad-split": ["--split", "test"]}.get(case, [])
    code = main(["llm", "dpo", "--model", "tiny", "--train_file", str(data), "--output_dir", str(tmp_path / "run"),
                 "--max_steps", "1", "--progress", "false", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert {"missing-column": "d.jsonl:1: missing field 'rejected'", "chat-without-template": "no chat template",
            "lora-targets": "lora_target_modules=['attn_q']", "bad-split": "split='test'"}[case] in err
    assert not list(tmp_path.glob("run/*"))  # nothing written
