"""JSONL data for the LLM trainers, validated before any training, and its tokenization.

Sources: JSONL files, Parquet/JSON files (via ``datasets``), ``datasets.Dataset``, ``DatasetDict``
(its "train" split), lists of dicts. Rows (extra keys are kept and passed to GRPO reward functions):

- SFT:  ``{"prompt": ..., "completion": ...}``
- DPO:  ``{"prompt": ..., "chosen": ..., "rejected": ...}``
- GRPO: ``{"prompt": ..., <extra columns, e.g. "answer">}``

A prompt is a string (used as is) or a conversation ``[{"role": ..., "content": ...}, ...]``, which
is rendered with the tokenizer's chat template (``add_generation_prompt=True``), as TRL does for
conversational data. A completion is a string or a list of assistant messages.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from policylab.errors import ConfigError, DataError, InputError, MissingFileError

__all__ = [
    "DPO_FIELDS",
    "GRPO_FIELDS",
    "SFT_FIELDS",
    "check_context_length",
    "check_prompt_lengths",
    "encode_completion",
    "encode_completions",
    "encode_prompt",
    "load_jsonl",
    "write_jsonl",
]

SFT_FIELDS = ("prompt", "completion")
DPO_FIELDS = ("prompt", "chosen", "rejected")
GRPO_FIELDS = ("prompt",)


def _is_conversation(x) -> bool:
    return isinstance(x, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in x)


def load_jsonl(source, required: tuple[str, ...]) -> tuple[list[dict], list[str]]:
    """Records and their labels ("file.jsonl:LINE", "file.parquet row I", "record I") from a JSONL path,
    a Parquet or JSON file (read with ``datasets``), a ``datasets.Dataset``, a ``DatasetDict`` (its
    "train" split) or a list of dicts.

    Raises ValueError naming the row and field for: an empty file/list, invalid JSON, a row that is
    not an object, a missing required field, or a required field that is empty or not a string or
    conversation.
    """
    if hasattr(source, "column_names") and isinstance(source.column_names, dict):  # DatasetDict
        if "train" not in source:
            raise DataError(f"the DatasetDict has no 'train' split (splits: {', '.join(source)}); pass one split")
        source = source["train"]
    name = "dataset"
    if isinstance(source, (str, Path)) and Path(source).suffix in (".parquet", ".json") and Path(source).is_file():
        source, name = _load_with_datasets(Path(source)), Path(source).name
    if hasattr(source, "column_names") and hasattr(source, "to_list"):  # datasets.Dataset
        records = source.to_list()
        labels = [f"{name} row {i}" for i in range(len(records))]
        if not records:
            raise DataError(f"{name} is empty")
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise MissingFileError(f"data file {str(path)!r} not found")
        records, labels = [], []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name}:{n}: invalid JSON ({exc.msg})") from None
            labels.append(f"{path.name}:{n}")
        if not records:
            raise InputError(f"data file {path.name} is empty")
    else:
        records = list(source)
        labels = [f"record {i}" for i in range(len(records))]
        if not records:
            raise InputError("training data is empty")
    for rec, where in zip(records, labels):
        if not isinstance(rec, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        for field in required:
            if field not in rec:
                raise InputError(f"{where}: missing field {field!r} (needs {', '.join(required)})")
            value = rec[field]
            if not (isinstance(value, str) or _is_conversation(value)):
                raise InputError(f"{where}: field {field!r} must be a string or a list of messages")
            if not value or (isinstance(value, str) and not value.strip()):
                raise InputError(f"{where}: field {field!r} is empty")
    return records, labels


def _load_with_datasets(path: Path):
    """A Parquet or JSON (array or JSON lines) file as a ``datasets.Dataset`` (errors name the file)."""
    import datasets

    builder = "parquet" if path.suffix == ".parquet" else "json"
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # noqa: BLE001 (pyarrow / datasets raise many error types for a bad file)
        raise DataError(f"{path.name}: cannot read as {builder} ({str(exc).splitlines()[0]})") from None


def write_jsonl(path, records) -> None:
    """Write records one JSON object per line (creating parent folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def encode_prompt(tokenizer, prompt) -> list[int]:
    """Token ids of a prompt: plain text with the tokenizer's special tokens (e.g. BOS), or a
    conversation through the chat template with the generation prompt appended."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt)["input_ids"])
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("a conversational prompt needs a tokenizer with a chat template")
    out = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)


def encode_completion(tokenizer, prompt, completion, prompt_ids: list[int]) -> list[int]:
    """Token ids of a completion followed by EOS (no BOS). A conversational completion is rendered
    with the chat template after the prompt and the part beyond the prompt's tokens is kept."""
    if isinstance(completion, str):
        ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    else:
        msgs = (prompt if _is_conversation(prompt) else [{"role": "user", "content": prompt}]) + completion
        out = tokenizer.apply_chat_template(msgs, tokenize=True)
        full = list(out["input_ids"] if hasattr(out, "keys") else out)
        ids = full[len(prompt_ids):]
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids.append(tokenizer.eos_token_id)
    return ids


def check_prompt_lengths(prompt_ids: list[list[int]], labels: list[str], max_len: int) -> None:
    """Raise ValueError naming the first row whose tokenized prompt exceeds ``max_len`` tokens."""
    for ids, where in zip(prompt_ids, labels):
        if len(ids) > max_len:
            raise InputError(
                f"{where}: prompt is {len(ids)} tokens, longer than max_prompt_length={max_len}"
            )


def encode_completions(tokenizer, records, labels, key: str, prompt_ids: list[list[int]], max_length: int,
                       context: int | None) -> list[list[int]]:
    """Completion ids (with EOS) of field ``key``, truncated so prompt + completion ≤ ``max_length``
    (TRL's max_length; the number of truncated rows is reported in a warning). A row longer than the
    model's context ``context`` after that is a ConfigError naming the row: lower max_length to truncate."""
    out, cut = [], 0
    for rec, p in zip(records, prompt_ids):
        ids = encode_completion(tokenizer, rec["prompt"], rec[key], p)
        cut += len(p) + len(ids) > max_length
        out.append(ids[: max_length - len(p)])
    if cut:
        warnings.warn(f"{cut} of {len(records)} {key!r} rows truncated to max_length={max_length} tokens", stacklevel=3)
    longest = max(range(len(out)), key=lambda i: len(prompt_ids[i]) + len(out[i]))
    check_context_length(len(prompt_ids[longest]) + len(out[longest]), context, labels[longest],
                         "prompt + completion", "set max_length to at most the context length to truncate")
    return out


def check_context_length(n_tokens: int, context: int | None, where: str, what: str, fix: str) -> None:
    """ConfigError when ``n_tokens`` exceed the model's ``max_position_embeddings`` (None: unknown, no check)."""
    if context is not None and n_tokens > context:
        raise ConfigError(f"{where}: {what} is {n_tokens} tokens, beyond the model's "
                          f"max_position_embeddings={context}; {fix}")
