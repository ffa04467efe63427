"""Data in the formats people have (issue 13 item 3, partial): datasets.Dataset, DatasetDict, Parquet and JSON
files give the same records as JSONL; a bad row is named before any training."""

from __future__ import annotations

import json

import pytest

datasets = pytest.importorskip("datasets")

from policylab.errors import DataError
from policylab.llm.data import DPO_FIELDS, load_jsonl

ROWS = [{"prompt": "1+1=", "chosen": "2", "rejected": "3"}, {"prompt": "2+2=", "chosen": "4", "rejected": "5"}]


def test_every_source_gives_the_same_records(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    ds = datasets.Dataset.from_list(ROWS)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    sources = [jsonl, ds, datasets.DatasetDict({"train": ds, "test": ds}), tmp_path / "d.parquet", tmp_path / "d.json"]
    for src in sources:
        records, _ = load_jsonl(src, DPO_FIELDS)
        assert records == ROWS, src
    assert load_jsonl(tmp_path / "d.parquet", DPO_FIELDS)[1] == ["d.parquet row 0", "d.parquet row 1"]


def test_bad_rows_and_splits_are_named(tmp_path):
    bad = datasets.Dataset.from_list([ROWS[0], {"prompt": "x", "chosen": "", "rejected": "y"}])
    with pytest.raises(ValueError, match="dataset row 1: field 'chosen' is empty"):
        load_jsonl(bad, DPO_FIELDS)
    with pytest.raises(ValueError, match="missing field 'rejected'"):
        load_jsonl(datasets.Dataset.from_list([{"prompt": "a", "chosen": "b"}]), DPO_FIELDS)
    with pytest.raises(DataError, match="no 'train' split \\(splits: test\\)"):
        load_jsonl(datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS)}), DPO_FIELDS)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="bad.parquet: cannot read as parquet"):
        load_jsonl(tmp_path / "bad.parquet", DPO_FIELDS)
