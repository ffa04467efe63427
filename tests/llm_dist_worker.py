"""Runs SFT, DPO and GRPO on the tiny model with fixed data: imported by tests/test_llm_accelerate.py for
the one-process reference, and started by it under ``torchrun --nproc_per_node 2`` for the
two-process runs. GRPO samples with a deterministic stand-in for ``policylab.llm.grpo.generate``
(completions chosen from the prompt and the position in its group), so both runs see the same
completions.

    torchrun --nproc_per_node 2 tests/llm_dist_worker.py OUT [--resume] [field=value ...]
"""

from __future__ import annotations

import contextlib
import sys

ALGOS = ("sft", "dpo", "grpo", "reward")
PROMPTS = [f"{a}{b}+{c}=" for a, b, c in zip("1234567898765432", "5647382910473625", "1928374655647382")]
COMPLETIONS = ["7", "12", "345", "6", "89", "0", "4321", "55"]


def records(algo: str) -> list[dict]:
    """16 rows; prompts of one length (GRPO left-pads them), completions of different lengths."""
    if algo == "sft":
        return [{"prompt": p, "completion": COMPLETIONS[i % 8]} for i, p in enumerate(PROMPTS)]
    if algo == "grpo":
        return [{"prompt": p} for p in PROMPTS]
    return [{"prompt": p, "chosen": COMPLETIONS[i % 8], "rejected": COMPLETIONS[(i + 3) % 8]}
            for i, p in enumerate(PROMPTS)]


def fixed_generate(model, tokenizer, prompt_ids, max_new_tokens, *args, **kwargs):
    """Deterministic stand-in for policylab.llm.sampling.generate: the g-th copy of a prompt in its
    group gets completion COMPLETIONS[(sum(prompt) + g) % 8] (+ EOS), whatever the process."""
    from policylab.llm.batching import pad

    completions, seen = [], {}
    for ids in prompt_ids:
        key = tuple(ids)
        g = seen[key] = seen.get(key, -1) + 1
        text = COMPLETIONS[(sum(ids) + g) % 8][:max_new_tokens]
        completions.append((tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
                           [:max_new_tokens])
    p_ids, p_mask = pad([list(p) for p in prompt_ids], tokenizer.pad_token_id, "left")
    c_ids, c_mask = pad(completions, tokenizer.pad_token_id, "right")
    return p_ids, p_mask, c_ids, c_mask, tokenizer.batch_decode(c_ids, skip_special_tokens=True)


def length_reward(prompts, completions, **_):
    return [float(len(c)) for c in completions]


@contextlib.contextmanager
def fixed_sampler():
    from policylab.llm import grpo

    original = grpo.generate
    grpo.generate = fixed_generate
    try:
        yield
    finally:
        grpo.generate = original


def make_trainer(algo: str, out, **overrides):
    from policylab.llm import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer
    from policylab.llm.reward import RewardConfig, RewardTrainer

    base = {"output_dir": str(out), "max_steps": 3, "batch_size": 8, "learning_rate": 1e-3, "progress": False,
            "save_steps": 2, "save_total_limit": 0, "report_to": "none"}
    if algo == "sft":
        return SFTTrainer("tiny", None, SFTConfig(**{**base, **overrides}), records("sft"))
    if algo == "dpo":
        return DPOTrainer("tiny", None, DPOConfig(**{**base, **overrides}), records("dpo"))
    if algo == "reward":
        return RewardTrainer("tiny", None, RewardConfig(**{**base, **overrides}), records("reward"))
    cfg = GRPOConfig(**{**base, "num_generations": 4, "max_completion_length": 5, "beta": 0.04, **overrides})
    return GRPOTrainer("tiny", None, cfg, records("grpo"), reward_funcs=[length_reward])


def run(algo: str, out, resume: bool = False, **overrides):
    """Train ``algo`` into ``out``; returns the trainer."""
    with fixed_sampler():
        trainer = make_trainer(algo, out, **overrides)
        trainer.train(resume_from="latest" if resume else None)
    return trainer


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    out, flags = sys.argv[1], sys.argv[2:]
    overrides = dict(f.split("=", 1) for f in flags if "=" in f)
    for algo in overrides.pop("algos", ",".join(ALGOS)).split(","):
        run(algo, f"{out}/{algo}", resume="--resume" in flags, **overrides)
