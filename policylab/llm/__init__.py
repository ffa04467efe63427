"""GRPO, DPO and SFT for Hugging Face causal language models (lecture §7.2–7.3).

Pure pieces (torch only): :func:`sequence_logprobs`; the losses live in ``policylab.losses``
(``grpo_loss``, ``dpo_loss``, ``ipo_loss``) and the advantages in ``policylab.returns``
(``group_relative_advantages``). Trainers, data loaders, the tiny offline model and the synthetic
task import ``transformers`` and are loaded lazily on first attribute access. No submodule is
named like an exported function (SFT lives in ``supervised.py``), so ``from policylab.llm import sft``
is always the function.
"""

from __future__ import annotations

import importlib

from policylab.llm.logprobs import sequence_logprobs

_LAZY = {
    "make_tiny_llama": "policylab.llm.tiny",
    "make_tiny_reward_model": "policylab.llm.tiny",
    "RewardTrainer": "policylab.llm.reward",
    "RewardConfig": "policylab.llm.reward",
    "RewardModelReward": "policylab.llm.reward",
    "make_char_tokenizer": "policylab.llm.tiny",
    "GRPOTrainer": "policylab.llm.grpo",
    "GRPOConfig": "policylab.llm.grpo",
    "DPOTrainer": "policylab.llm.dpo",
    "DPOConfig": "policylab.llm.dpo",
    "SFTTrainer": "policylab.llm.supervised",
    "SFTConfig": "policylab.llm.supervised",
    "sft": "policylab.llm.supervised",
    "Rollout": "policylab.llm.grpo",
    "generate": "policylab.llm.sampling",
    "load_jsonl": "policylab.llm.data",
    "correctness_reward": "policylab.llm.task",
    "make_addition_problems": "policylab.llm.task",
    "write_addition_data": "policylab.llm.task",
    "accuracy": "policylab.llm.task",
}

__all__ = [  # noqa: RUF022 (grouped by module, as _LAZY)
    "sequence_logprobs", "make_tiny_llama", "make_tiny_reward_model", "RewardTrainer", "RewardConfig",
    "RewardModelReward", "make_char_tokenizer", "GRPOTrainer", "GRPOConfig", "DPOTrainer",
    "DPOConfig", "SFTTrainer", "SFTConfig", "sft", "Rollout", "generate", "load_jsonl", "correctness_reward",
    "make_addition_problems", "write_addition_data", "accuracy",
]
assert set(__all__) == {"sequence_logprobs", *_LAZY}


def __getattr__(name: str):
    if name in _LAZY:
        value = globals()[name] = getattr(importlib.import_module(_LAZY[name]), name)
        return value
    raise AttributeError(f"module 'policylab.llm' has no attribute {name!r}")
