"""Training data for the LLM trainers: loading, validation before any model loads, and tokenization.

Sources: JSONL files, Parquet/JSON files (via ``datasets``), ``datasets.Dataset``, ``DatasetDict``,
lists of dicts. ``split`` (config field, default "train") picks a DatasetDict's split; a file or a
Dataset is the one split "train". Either may be sliced like ``datasets`` does: ``train[:80%]``,
``train[100:200]``. Rows, in TRL's standard shapes (extra keys are kept and passed to GRPO rewards):

- SFT:  ``{"prompt", "completion"}`` or ``{"messages": [...]}`` (a whole conversation, every token
  after the first is trained on, as TRL's SFTTrainer does for language-modeling rows);
- DPO, reward: ``{"prompt", "chosen", "rejected"}``, or ``{"chosen", "rejected"}`` with an implicit
  prompt: their longest common prefix (:func:`extract_prompt`, as TRL's);
- GRPO: ``{"prompt", <extra columns, e.g. "answer">}``.

Each text field is a string (standard format) or a list of ``{"role", "content"}`` messages
(conversational format; the fields of one row are all of one kind). Conversations are rendered with
the tokenizer's chat template as TRL 1.16's trainers render them: the prompt with the generation
prompt appended, prompt + completion messages as one conversation, and the completion = the tokens
after their common prefix (``common_prefix_length``); no EOS is added (the template ends the turn).
Plain text: prompt with the tokenizer's special tokens (e.g. BOS), completion = tokens of
prompt + completion after that prefix, plus EOS.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from policylab.errors import ConfigError, DataError, InputError, MissingFileError

__all__ = [
    "FORMATS",
    "check_chat_template",
    "check_context_length",
    "check_prompt_lengths",
    "common_prefix_length",
    "encode_prompt",
    "encode_sequence",
    "extract_prompt",
    "is_conversation",
    "load_jsonl",
    "load_rows",
    "tokenize_rows",
    "write_jsonl",
]

#: Row shapes each trainer accepts, the first complete one wins (TRL's dataset types).
FORMATS = {
    "sft": (("prompt", "completion"), ("messages",)),
    "dpo": (("prompt", "chosen", "rejected"), ("chosen", "rejected")),
    "reward": (("prompt", "chosen", "rejected"), ("chosen", "rejected")),
    "grpo": (("prompt",),),
}
TEXT_FIELDS = ("prompt", "completion", "chosen", "rejected", "messages")


def is_conversation(x) -> bool:
    """A non-empty list of dicts with a "role" (TRL's ``is_conversational`` test for one field)."""
    return isinstance(x, list) and bool(x) and all(isinstance(m, dict) and "role" in m for m in x)


def load_rows(source, kind: str, split: str = "train") -> tuple[list[dict], list[str]]:
    """Validated records of a trainer's data (``kind``: "sft", "dpo", "reward", "grpo") and their labels.

    Each row must hold one of the shapes in :data:`FORMATS`; implicit-prompt preference rows get their
    prompt extracted. A bad row raises InputError naming the row and field (see :func:`load_jsonl`),
    before any model or tokenizer is involved."""
    records, labels = load_jsonl(source, (), split=split)
    formats = FORMATS[kind]
    out = []
    for rec, where in zip(records, labels):
        shape = next((f for f in formats if all(k in rec for k in f)), None)
        if shape is None:
            first = formats[0]
            missing = next(k for k in first if k not in rec)
            alt = "; or " + ", ".join(formats[1]) + (" (implicit prompt)" if "chosen" in formats[1] else "") \
                if len(formats) > 1 else ""
            raise InputError(f"{where}: missing field {missing!r} (needs {', '.join(first)}{alt})")
        check_fields(rec, shape, where)
        if "prompt" not in shape and "chosen" in shape:
            rec = {**rec, **extract_prompt(rec)}
            for field in ("prompt", "chosen", "rejected"):
                if not rec[field]:
                    raise InputError(f"{where}: field {field!r} is empty after splitting 'chosen' and 'rejected' at "
                                     "their common prefix (the implicit prompt); give an explicit 'prompt'")
        out.append(rec)
    return out, labels


def check_fields(rec: dict, fields, where: str) -> None:
    """Each field a non-empty string or a conversation of {"role": str, "content": str} messages, all of
    one kind; "messages" must be a conversation. InputError naming the row, field and message."""
    kinds = {}
    for field in fields:
        value = rec[field]
        if isinstance(value, list):
            if not value:
                raise InputError(f"{where}: field {field!r} is an empty list of messages")
            for j, m in enumerate(value):
                if not isinstance(m, dict):
                    raise InputError(f"{where}: field {field!r} message {j} is a {type(m).__name__}, not a "
                                     '{"role": ..., "content": ...} object')
                for key in ("role", "content"):
                    if not isinstance(m.get(key), str):
                        got = "missing" if key not in m else f"a {type(m[key]).__name__}"
                        raise InputError(f"{where}: field {field!r} message {j}: {key!r} must be a string ({got})")
            kinds[field] = "a list of messages"
        elif isinstance(value, str) and field != "messages":
            if not value.strip():
                raise InputError(f"{where}: field {field!r} is empty")
            kinds[field] = "a string"
        else:
            want = "a list of messages" if field == "messages" else "a string or a list of messages"
            raise InputError(f"{where}: field {field!r} must be {want}, got {type(value).__name__}")
    if len(set(kinds.values())) > 1:
        (f1, k1), (f2, k2) = next((a, b) for a in kinds.items() for b in kinds.items() if a[1] != b[1])
        raise InputError(f"{where}: field {f1!r} is {k1} but {f2!r} is {k2}; use one format per row")


def extract_prompt(example: dict) -> dict:
    """The implicit prompt of a preference row: the longest common prefix of "chosen" and "rejected"
    (characters of strings, or whole messages of conversations), as TRL's ``extract_prompt``
    (a space just before the split point goes to the completions)."""
    chosen, rejected = example["chosen"], example["rejected"]
    idx = min(len(chosen), len(rejected))
    for i in range(idx):
        if chosen[i] != rejected[i]:
            idx = i - 1 if i > 0 and chosen[i - 1] == " " else i
            break
    return {"prompt": chosen[:idx], "chosen": chosen[idx:], "rejected": rejected[idx:]}


_SPLIT = re.compile(r"^\s*([\w.-]+)\s*(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?\s*$")


def parse_split(split: str) -> tuple[str, str | None, str | None]:
    """("name", start, stop) of a split spec "name" or "name[start:stop]" (ints or percents, as ``datasets``)."""
    m = _SPLIT.match(split) if isinstance(split, str) else None
    if m is None:
        raise ConfigError(f"split={split!r}: expected a split name, optionally sliced: 'train', 'test', "
                          "'train[:80%]', 'train[100:200]'")
    return m.group(1), m.group(2), m.group(3)


def _slice(records: list, labels: list, start: str | None, stop: str | None, split: str):
    n = len(records)

    def index(s):
        if s is None:
            return None
        return round(int(s[:-1]) * n / 100) if s.endswith("%") else int(s)

    sl = slice(index(start), index(stop))
    records, labels = records[sl], labels[sl]
    if not records:
        raise DataError(f"split={split!r} selects no rows of {n}")
    return records, labels


def load_jsonl(source, required: tuple[str, ...], split: str = "train") -> tuple[list[dict], list[str]]:
    """Records and their labels ("file.jsonl:LINE", "file.parquet row I", "record I") from a JSONL path,
    a Parquet or JSON file (read with ``datasets``), a ``datasets.Dataset``, a ``DatasetDict`` or a list
    of dicts; ``split`` names the DatasetDict split (a file or Dataset is the split "train") and may
    slice it (``train[:80%]``).

    Raises InputError naming the row and field for: an empty file/list, invalid JSON, a row that is
    not an object, a missing required field, or a required field that is empty or not a string or
    conversation; DataError for a split that does not exist or selects nothing.
    """
    name, start, stop = parse_split(split)
    if hasattr(source, "column_names") and isinstance(source.column_names, dict):  # DatasetDict
        if name not in source:
            raise DataError(f"split={split!r}: the DatasetDict has no {name!r} split (splits: {', '.join(source)})")
        source = source[name]
    elif name != "train":
        raise DataError(f"split={split!r}: a data file or Dataset is one split, 'train' (slice it: 'train[:80%]')")
    label = "dataset"
    if isinstance(source, (str, Path)) and Path(source).suffix in (".parquet", ".json") and Path(source).is_file():
        source, label = _load_with_datasets(Path(source)), Path(source).name
    if hasattr(source, "column_names") and hasattr(source, "to_list"):  # datasets.Dataset
        records = source.to_list()
        labels = [f"{label} row {i}" for i in range(len(records))]
        if not records:
            raise DataError(f"{label} is empty")
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
    if start is not None or stop is not None:
        records, labels = _slice(records, labels, start, stop, split)
    for rec, where in zip(records, labels):
        if not isinstance(rec, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        for field in required:
            if field not in rec:
                raise InputError(f"{where}: missing field {field!r} (needs {', '.join(required)})")
        check_fields(rec, [f for f in required if f in TEXT_FIELDS], where)
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


# ------------------------------------------------------------------------------- tokenization


def check_chat_template(records, labels, tokenizer) -> None:
    """InputError naming the first conversational row and field when the tokenizer has no chat template
    (checked once, before the model's weights load)."""
    if getattr(tokenizer, "chat_template", None):
        return
    for rec, where in zip(records, labels):
        field = next((f for f in TEXT_FIELDS if is_conversation(rec.get(f))), None)
        if field is not None:
            raise InputError(f"{where}: field {field!r} is a list of messages (conversational format) but the "
                             "tokenizer has no chat template; set tokenizer.chat_template or use plain-text rows")


def _ids(out) -> list[int]:
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def _chat(tokenizer, messages, **kwargs) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        raise InputError("a list of messages needs a tokenizer with a chat template (tokenizer.chat_template)")
    return _ids(tokenizer.apply_chat_template(messages, tokenize=True, **kwargs))


def encode_prompt(tokenizer, prompt) -> list[int]:
    """Token ids of a prompt: plain text with the tokenizer's special tokens (e.g. BOS), or a
    conversation through the chat template with the generation prompt appended (TRL's)."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt)["input_ids"])
    return _chat(tokenizer, prompt, add_generation_prompt=True)


def encode_sequence(tokenizer, prompt, completion) -> list[int]:
    """Token ids of prompt + completion as one sequence: plain text → tokens of the concatenated text
    + EOS (unless it already ends in EOS); a conversation → the chat template over the prompt's and the
    completion's messages (no generation prompt, no EOS added: the template ends the turn)."""
    if isinstance(completion, str):
        ids = list(tokenizer(prompt + completion)["input_ids"])
        return ids if ids and ids[-1] == tokenizer.eos_token_id else [*ids, tokenizer.eos_token_id]
    return _chat(tokenizer, prompt + completion)


def common_prefix_length(ids: list[int], other: list[int]) -> int:
    """Number of leading tokens two sequences share (where a completion starts, as TRL 1.16)."""
    n = 0
    for a, b in zip(ids, other):
        if a != b:
            break
        n += 1
    return n


def tokenize_rows(tokenizer, records, labels, keys: tuple[str, ...], max_prompt_length: int, max_length: int,
                  context: int | None) -> tuple[list[list[int]], ...]:
    """(prompt_ids, completion ids of each of ``keys``) for validated rows, as TRL tokenizes them.

    A row's completion starts where its tokenized prompt and each tokenized prompt + completion first
    differ (the smallest such point over ``keys``). A "messages" row is one conversation: its first
    token is the prompt, the rest the completion. A prompt over ``min(max_prompt_length, max_length − 1)``
    tokens raises InputError naming the row; completions are truncated so prompt + completion ≤
    ``max_length`` (counted in a warning); a row beyond the model's context ``context`` is a ConfigError."""
    prompts, completions = [], [[] for _ in keys]
    for rec, where in zip(records, labels):
        if "messages" in rec:
            full = _chat(tokenizer, rec["messages"])
            p, parts = full[:1], [full[1:]]
        else:
            p = encode_prompt(tokenizer, rec["prompt"])
            seqs = [encode_sequence(tokenizer, rec["prompt"], rec[k]) for k in keys]
            n = min(common_prefix_length(p, s) for s in seqs)
            p, parts = p[:n], [s[n:] for s in seqs]
        for key, part in zip(keys, parts):
            if not part:
                raise InputError(f"{where}: field {key!r} adds no tokens after the prompt")
        prompts.append(p)
        for out, part in zip(completions, parts):
            out.append(part)
    check_prompt_lengths(prompts, labels, min(max_prompt_length, max_length - 1))
    for key, out in zip(keys, completions):
        cut = sum(len(p) + len(c) > max_length for p, c in zip(prompts, out))
        out[:] = [c[: max_length - len(p)] for p, c in zip(prompts, out)]
        if cut:
            warnings.warn(f"{cut} of {len(records)} {key!r} rows truncated to max_length={max_length} tokens",
                          stacklevel=3)
        longest = max(range(len(out)), key=lambda i: len(prompts[i]) + len(out[i]))
        check_context_length(len(prompts[longest]) + len(out[longest]), context, labels[longest],
                             "prompt + completion", "set max_length to at most the context length to truncate")
    return prompts, *completions


def check_prompt_lengths(prompt_ids: list[list[int]], labels: list[str], max_len: int) -> None:
    """Raise InputError naming the first row whose tokenized prompt exceeds ``max_len`` tokens."""
    for ids, where in zip(prompt_ids, labels):
        if len(ids) > max_len:
            raise InputError(
                f"{where}: prompt is {len(ids)} tokens, longer than max_prompt_length={max_len}"
            )


def check_context_length(n_tokens: int, context: int | None, where: str, what: str, fix: str) -> None:
    """ConfigError when ``n_tokens`` exceed the model's ``max_position_embeddings`` (None: unknown, no check)."""
    if context is not None and n_tokens > context:
        raise ConfigError(f"{where}: {what} is {n_tokens} tokens, beyond the model's "
                          f"max_position_embeddings={context}; {fix}")
