"""A synthetic task made in code: small-number addition "a+b=" → "c", with a checkable answer.

    train, test = make_addition_problems(max_a=99, max_b=9, test_fraction=0.2, seed=0)
    correctness_reward(["3+4="], ["7"], answer=["7"])   # [1.0]

A short SFT on ``sft_records(train, off_by_one=0.6)`` — a noisy teacher that answers a+b+1 60% of
the time — gives a weak policy that still samples the right answer often; GRPO with
:func:`correctness_reward` on the train prompts then raises greedy accuracy on the held-out ``test``
prompts (with the README's settings, SFT 500 steps then GRPO 150 steps on the tiny Llama:
0.365 → 0.625, measured 2026-11-26; ``policylab tour`` checks a gain ≥ 0.15); DPO on
``dpo_records(train)`` (correct answer preferred over a+b±1) raises preference accuracy and
the implicit reward margin on held-out pairs. :func:`policy_preference_records` builds reward-model
pairs the RLHF way, from the policy's own wrong samples: a reward model trained on them (from the SFT
checkpoint) is a GRPO reward that raises held-out accuracy without the checker (0.365 → 0.760, README).
:func:`write_addition_data` writes the JSONL files the CLI reads.
"""

from __future__ import annotations

import math
import numbers
import re
from pathlib import Path

import numpy as np

from policylab.errors import ConfigError
from policylab.llm.data import write_jsonl

__all__ = [
    "REWARDS",
    "accuracy",
    "completion_text",
    "correctness_reward",
    "digit_match_reward",
    "digits_reward",
    "dpo_records",
    "make_addition_problems",
    "policy_preference_records",
    "sample_answers",
    "sft_records",
    "write_addition_data",
]


def make_addition_problems(max_a: int = 99, max_b: int = 9, test_fraction: float = 0.2, seed: int = 0):
    """All pairs a ∈ [0, max_a], b ∈ [0, max_b] as {"prompt": "a+b=", "answer": "<a+b>"}, shuffled
    with ``seed`` and split into (train, test) with a ``test_fraction`` of held-out pairs. The default
    (two-digit + one-digit, 1000 pairs) shares digit-level structure between train and test pairs,
    so what a policy learns on train prompts can carry over to the held-out ones. Bad arguments raise
    ConfigError naming them (both splits must be non-empty)."""
    _check_task_args(max_a=max_a, max_b=max_b, test_fraction=test_fraction, seed=seed)
    pairs = [(a, b) for a in range(max_a + 1) for b in range(max_b + 1)]
    order = np.random.default_rng(seed).permutation(len(pairs))
    problems = [{"prompt": f"{pairs[i][0]}+{pairs[i][1]}=", "answer": str(sum(pairs[i]))} for i in order]
    n_test = round(test_fraction * len(problems))
    if not 0 < n_test < len(problems):
        raise ConfigError(f"test_fraction={test_fraction} of {len(problems)} pairs leaves an empty "
                          f"{'test' if n_test == 0 else 'train'} split")
    return problems[n_test:], problems[:n_test]


#: (low, high, integer) of each argument of the task; test_fraction < 1 is checked by the split.
_TASK_ARGS = {"max_a": (0, 100_000, True), "max_b": (0, 100_000, True), "seed": (0, 2**63 - 1, True),
              "test_fraction": (0.0, 1.0, False), "off_by_one": (0.0, 1.0, False)}


def _check_task_args(**args) -> None:
    """ConfigError naming the first argument that is not a finite number in its range."""
    for name, value in args.items():
        lo, hi, integer = _TASK_ARGS[name]
        number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if not number or not lo <= value <= hi or (integer and value != int(value)):
            kind = "an integer" if integer else "a number"
            raise ConfigError(f"{name} must be {kind} in [{lo}, {hi}], got {value!r}")


def sft_records(problems, off_by_one: float = 0.0, seed: int = 0) -> list[dict]:
    """{"prompt", "completion"} rows from a noisy teacher: the correct answer, except that with
    probability ``off_by_one`` the teacher answers a+b+1 (a systematic bias a weak policy inherits)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in problems:
        wrong = rng.random() < off_by_one
        rows.append({"prompt": p["prompt"], "completion": str(int(p["answer"]) + 1) if wrong else p["answer"]})
    return rows


def dpo_records(problems, seed: int = 0, offsets=(1, -1)) -> list[dict]:
    """{"prompt", "chosen", "rejected"} rows: the correct answer preferred over answer + d, d drawn
    from ``offsets`` (default ±1: the noisy teacher's a+b+1 mistake and its mirror; rejecting only +1
    teaches DPO "answer lower", which overshoots to a+b−1). Negative results are skipped."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in problems:
        a = int(p["answer"])
        wrong = [a + d for d in offsets if a + d >= 0 and d != 0]
        rows.append({"prompt": p["prompt"], "chosen": p["answer"], "rejected": str(rng.choice(wrong))})
    return rows


def completion_text(completion) -> str:
    """A completion's text: the string itself, or the content of a conversational completion's last message."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


def correctness_reward(prompts, completions, answer, **_) -> list[float]:
    """1.0 when the completion (stripped) equals the answer column, else 0.0."""
    return [float(completion_text(c).strip() == str(a).strip()) for c, a in zip(completions, answer)]


def digit_match_reward(prompts, completions, answer, **_) -> list[float]:
    """Partial credit: fraction of the answer's digits right, aligned from the right (units first),
    minus nothing for extra characters; 1.0 exactly when correctness_reward is 1.0 (dense shaping)."""
    out = []
    for c, a in zip(completions, answer):
        c, a = completion_text(c).strip(), str(a).strip()
        hits = sum(x == y for x, y in zip(reversed(c), reversed(a)))
        out.append(hits / max(len(a), len(c), 1))
    return out


def digits_reward(prompts, completions, **_) -> list[float]:
    """1.0 when the completion is a bare non-negative integer (a format reward), else 0.0."""
    return [float(re.fullmatch(r"\s*\d+\s*", completion_text(c)) is not None) for c in completions]


#: Reward functions by name (the CLI's ``reward_funcs`` field).
REWARDS = {"correctness": correctness_reward, "digit_match": digit_match_reward, "digits": digits_reward}


def write_addition_data(out_dir, max_a: int = 99, max_b: int = 9, test_fraction: float = 0.2, seed: int = 0,
                        off_by_one: float = 0.6) -> dict:
    """Write sft.jsonl (noisy teacher, see :func:`sft_records`), dpo.jsonl, grpo.jsonl (train prompts
    with "answer") and test.jsonl (held-out pairs with "answer"). Arguments are checked before any file is written."""
    _check_task_args(off_by_one=off_by_one)
    train, test = make_addition_problems(max_a, max_b, test_fraction, seed)
    out = Path(out_dir)
    files = {
        "sft": (out / "sft.jsonl", sft_records(train, off_by_one, seed)),
        "dpo": (out / "dpo.jsonl", dpo_records(train, seed)),
        "grpo": (out / "grpo.jsonl", train),
        "test": (out / "test.jsonl", test),
    }
    for path, rows in files.values():
        write_jsonl(path, rows)
    return {k: str(v[0]) for k, v in files.items()}


def sample_answers(model, tokenizer, problems, num_samples: int = 1, do_sample: bool = True,
                   temperature: float = 1.0, max_new_tokens: int = 4, batch_size: int = 64) -> list[list[str]]:
    """``num_samples`` completions per {"prompt"} row from ``model`` (greedy with ``do_sample=False``),
    decoded; ``out[i]`` are row i's. Sampling draws from torch's global generator (seed it first)."""
    from policylab.llm.data import encode_prompt
    from policylab.llm.sampling import generate

    ids = [encode_prompt(tokenizer, p["prompt"]) for p in problems for _ in range(num_samples)]
    texts = []
    for i in range(0, len(ids), batch_size):
        texts += generate(model, tokenizer, ids[i : i + batch_size], max_new_tokens, do_sample, temperature)[-1]
    return [texts[i : i + num_samples] for i in range(0, len(texts), num_samples)]


def accuracy(model, tokenizer, problems, max_new_tokens: int = 4, batch_size: int = 64) -> float:
    """Greedy-decoding accuracy (fraction of exactly correct answers) on {"prompt", "answer"} rows."""
    if not problems:
        return math.nan
    texts = [t for ts in sample_answers(model, tokenizer, problems, 1, False, 1.0, max_new_tokens, batch_size) for t in ts]
    return sum(correctness_reward(None, texts, [p["answer"] for p in problems])) / len(problems)


def policy_preference_records(model, tokenizer, problems, num_samples: int = 8, temperature: float = 1.0,
                              max_new_tokens: int = 4, seed: int = 0, offsets=(1, -1)) -> list[dict]:
    """Reward-model data the RLHF way, from the policy's own mistakes: sample ``num_samples`` answers
    per prompt from ``model``, label them with the checker (:func:`correctness_reward`), and pair the
    correct answer (chosen) with each distinct wrong, non-empty sample (rejected); plus, with
    ``offsets``, the :func:`dpo_records` pair (answer vs answer + d) of every prompt. A reward model
    trained on hand-made a+b±1 pairs alone ranks the policy's own errors barely above chance and GRPO
    exploits it; pairs whose rejected side the policy actually says cover what it will try.
    Sampling is seeded by ``seed`` without touching torch's global generator."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = sample_answers(model, tokenizer, problems, num_samples, True, temperature, max_new_tokens)
    rows = []
    for p, texts in zip(problems, samples):
        wrong = dict.fromkeys(t.strip() for t in texts)  # distinct, in sampling order
        rows += [{"prompt": p["prompt"], "chosen": p["answer"], "rejected": t} for t in wrong
                 if t and not correctness_reward(None, [t], [p["answer"]])[0]]
    return rows + (dpo_records(problems, seed, offsets) if offsets else [])
