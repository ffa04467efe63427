"""Data in the formats people have (issue 13 item 3): datasets.Dataset, DatasetDict (any split, sliced),
Parquet and JSON files give the same records as JSONL; conversational rows ("messages", and prompt /
completion / chosen / rejected as message lists) are rendered with the chat template exactly as TRL 1.16's
trainers tokenize them; implicit-prompt preference rows get TRL's extract_prompt; a bad row is named
before any model loads."""

from __future__ import annotations

import copy
import json

import pytest
import torch

datasets = pytest.importorskip("datasets")

from policylab.errors import DataError, InputError
from policylab.llm.data import extract_prompt, load_jsonl, load_rows, tokenize_rows
from policylab.llm.tiny import make_char_tokenizer, make_tiny_llama

torch.set_num_threads(1)
ROWS = [{"prompt": "1+1=", "chosen": "2", "rejected": "3"}, {"prompt": "2+2=", "chosen": "4", "rejected": "5"}]


def msgs(*turns):
    return [{"role": r, "content": c} for r, c in zip(("system", "user", "assistant") if len(turns) == 3 else
                                                     ("user", "assistant"), turns)]


def user(text):
    return [{"role": "user", "content": text}]


def assistant(text):
    return [{"role": "assistant", "content": text}]


CHAT_DPO = [
    {"prompt": [{"role": "system", "content": "add"}, *user("3+4=")], "chosen": assistant("7"), "rejected": assistant("8")},
    {"prompt": user("12+9="), "chosen": assistant("21"), "rejected": assistant("2 1")},
    {"prompt": user("1+1="), "chosen": assistant("2"), "rejected": assistant("11")},
]
IMPLICIT_DPO = [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in CHAT_DPO]
CHAT_SFT = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in CHAT_DPO]
CHAT_MESSAGES = [{"messages": r["prompt"] + r["chosen"]} for r in CHAT_DPO]


def test_every_source_gives_the_same_records(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    ds = datasets.Dataset.from_list(ROWS)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    sources = [jsonl, ds, datasets.DatasetDict({"train": ds, "test": ds}), tmp_path / "d.parquet", tmp_path / "d.json"]
    for src in sources:
        records, _ = load_rows(src, "dpo")
        assert records == ROWS, src
    assert load_rows(tmp_path / "d.parquet", "dpo")[1] == ["d.parquet row 0", "d.parquet row 1"]
    chat = tmp_path / "chat.jsonl"  # message lists survive every source too
    chat.write_text("".join(json.dumps(r) + "\n" for r in CHAT_DPO))
    datasets.Dataset.from_list(CHAT_DPO).to_parquet(str(tmp_path / "chat.parquet"))
    assert load_rows(chat, "dpo")[0] == load_rows(tmp_path / "chat.parquet", "dpo")[0] == CHAT_DPO


def test_split_picks_and_slices(tmp_path):
    train, test = datasets.Dataset.from_list(ROWS * 5), datasets.Dataset.from_list(ROWS[:1])
    dd = datasets.DatasetDict({"train": train, "test": test})
    assert load_rows(dd, "dpo", split="test")[0] == ROWS[:1]
    assert len(load_rows(dd, "dpo", split="train[:80%]")[0]) == 8
    records, labels = load_rows(dd, "dpo", split="train[7:]")
    assert len(records) == 3 and labels[0] == "dataset row 7"
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS * 5))
    assert load_rows(jsonl, "dpo", split="train[-2:]")[1] == ["d.jsonl:9", "d.jsonl:10"]
    with pytest.raises(DataError, match="split='validation'.*no 'validation' split \\(splits: train, test\\)"):
        load_rows(dd, "dpo", split="validation")
    with pytest.raises(DataError, match="split='test': a data file or Dataset is one split, 'train'"):
        load_rows(jsonl, "dpo", split="test")
    with pytest.raises(DataError, match="selects no rows of 10"):
        load_rows(jsonl, "dpo", split="train[10:]")
    with pytest.raises(InputError, match="split='train\\[a:b\\]'"):
        load_rows(jsonl, "dpo", split="train[a:b]")


def test_bad_rows_are_named(tmp_path):
    bad = datasets.Dataset.from_list([ROWS[0], {"prompt": "x", "chosen": "", "rejected": "y"}])
    with pytest.raises(InputError, match="dataset row 1: field 'chosen' is empty"):
        load_rows(bad, "dpo")
    with pytest.raises(InputError, match="dataset row 0: missing field 'rejected' \\(needs prompt, chosen, rejected; "
                                         "or chosen, rejected \\(implicit prompt\\)\\)"):
        load_rows(datasets.Dataset.from_list([{"prompt": "a", "chosen": "b"}]), "dpo")
    with pytest.raises(InputError, match="record 0: missing field 'completion' \\(needs prompt, completion; or messages\\)"):
        load_rows([{"prompt": "a"}], "sft")
    with pytest.raises(InputError, match="record 1: field 'messages' message 1: 'content' must be a string \\(missing\\)"):
        load_rows([CHAT_MESSAGES[0], {"messages": [user("a")[0], {"role": "assistant"}]}], "sft")
    with pytest.raises(InputError, match="record 0: field 'prompt' is a list of messages but 'completion' is a string"):
        load_rows([{"prompt": user("a"), "completion": "b"}], "sft")
    with pytest.raises(InputError, match="record 0: field 'messages' must be a list of messages, got str"):
        load_rows([{"messages": "hello"}], "sft")
    with pytest.raises(InputError, match="record 0: field 'prompt' is empty after splitting 'chosen' and 'rejected'"):
        load_rows([{"chosen": "abc", "rejected": "xyz"}], "dpo")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="bad.parquet: cannot read as parquet"):
        load_jsonl(tmp_path / "bad.parquet", ())


def test_extract_prompt_is_trls():
    from trl.data_utils import extract_prompt as trl_extract_prompt

    rows = IMPLICIT_DPO + [{"chosen": "The sky is blue.", "rejected": "The sky is green."},
                           {"chosen": "Q: 2+2? A: 4", "rejected": "Q: 2+2? A: 5"}]
    for row in rows:
        assert extract_prompt(row) == trl_extract_prompt(row)
    assert load_rows(IMPLICIT_DPO, "dpo")[0] == CHAT_DPO


def _trl_trainer(kind, rows, tok, tmp_path):
    import trl
    from test_llm_parity_trainers import _trl_args

    model = make_tiny_llama(len(tok))
    ds = datasets.Dataset.from_list(rows)
    args = _trl_args(tmp_path / kind, max_steps=1)
    if kind == "dpo":
        return trl.DPOTrainer(model=model, ref_model=copy.deepcopy(model), processing_class=tok, train_dataset=ds,
                              args=trl.DPOConfig(**args))
    if kind == "sft":
        return trl.SFTTrainer(model=model, processing_class=tok, train_dataset=ds, args=trl.SFTConfig(**args))
    from policylab.llm.tiny import make_tiny_reward_model

    rm = make_tiny_reward_model(len(tok))
    return trl.RewardTrainer(model=rm, processing_class=tok, train_dataset=ds, args=trl.RewardConfig(**args))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_chat_rows_tokenize_as_trls_trainers(tmp_path):
    pytest.importorskip("trl")
    from trl.data_utils import maybe_apply_chat_template

    tok = make_char_tokenizer(chat_template=True)

    def ours(rows, kind, keys):
        records, labels = load_rows(rows, kind)
        return tokenize_rows(tok, records, labels, keys, 512, 1024, None)

    for rows in (CHAT_DPO, IMPLICIT_DPO, ROWS):  # DPO: prompt_ids, chosen_ids, rejected_ids columns
        trl_ds = _trl_trainer("dpo", rows, tok, tmp_path).train_dataset
        p, c, r = ours(rows, "dpo", ("chosen", "rejected"))
        assert (p, c, r) == (trl_ds["prompt_ids"], trl_ds["chosen_ids"], trl_ds["rejected_ids"])
    for row, ids in zip(CHAT_DPO, p := ours(CHAT_DPO, "dpo", ("chosen",))[0]):  # = TRL's rendered text
        text = maybe_apply_chat_template({"prompt": row["prompt"]}, tok)["prompt"]
        assert ids == tok(text, add_special_tokens=False)["input_ids"]
    for rows in (CHAT_SFT, CHAT_MESSAGES):  # SFT: input_ids (+ completion_mask for prompt-completion rows)
        trl_ds = _trl_trainer("sft", rows, tok, tmp_path).train_dataset
        p, c = ours(rows, "sft", ("completion",))
        assert [a + b for a, b in zip(p, c)] == trl_ds["input_ids"]
        if "completion_mask" in trl_ds.column_names:
            assert [[0] * len(a) + [1] * len(b) for a, b in zip(p, c)] == trl_ds["completion_mask"]
    for rows in (CHAT_DPO, IMPLICIT_DPO):  # reward: whole chosen / rejected sequences
        trl_ds = _trl_trainer("reward", rows, tok, tmp_path).train_dataset
        p, c, r = ours(rows, "reward", ("chosen", "rejected"))
        assert [a + b for a, b in zip(p, c)] == trl_ds["chosen_ids"]
        assert [a + b for a, b in zip(p, r)] == trl_ds["rejected_ids"]
