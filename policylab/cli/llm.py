"""`policylab llm`: SFT, DPO and GRPO on Hugging Face causal LMs (offline), and the synthetic task.

    policylab llm make-data --out data/                         # addition task: sft/dpo/grpo/test.jsonl
    policylab llm sft  --config configs/llm/sft.yaml            # YAML fields = SFTConfig fields
    policylab llm grpo --config configs/llm/grpo.yaml --learning_rate 1e-3 --max_steps 50
    policylab llm dpo  --model runs/llm/sft --train_file data/dpo.jsonl --resume
    policylab llm reward --model tiny --train_file data/dpo.jsonl    # Bradley-Terry reward model
    policylab llm merge runs/llm/dpo --out merged/                 # LoRA run -> plain model folder
    policylab llm eval --model runs/llm/grpo --data data/test.jsonl    # greedy accuracy

Every config field can be set in the YAML file or overridden with --field value (or --field=value;
dashes and underscores are equivalent; lists as a,b or [a, b]). --model tiny builds the tiny
Llama; a run folder (with checkpoint-N inside) loads its latest checkpoint.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import ClassVar

TRAINERS = {"sft": ("policylab.llm.supervised", "SFTTrainer", "SFTConfig"),
            "dpo": ("policylab.llm.dpo", "DPOTrainer", "DPOConfig"),
            "grpo": ("policylab.llm.grpo", "GRPOTrainer", "GRPOConfig"),
            "reward": ("policylab.llm.reward", "RewardTrainer", "RewardConfig")}


@dataclass
class MakeDataConfig:
    """Settings of ``policylab llm make-data`` (the synthetic addition task)."""

    out: str = "data"  # output folder
    max_a: int = 99  # first operand a in [0, max_a]
    max_b: int = 9  # second operand b in [0, max_b]
    test_fraction: float = 0.2  # fraction of the (a, b) pairs held out in test.jsonl
    off_by_one: float = 0.6  # fraction of SFT answers the noisy teacher gives as a+b+1
    seed: int = 0  # shuffles the pairs and the teacher's noise

    RANGES: ClassVar[dict] = {"max_a": "[0, 100000]", "max_b": "[0, 100000]", "test_fraction": "(0, 1)",
                              "off_by_one": "[0, 1]"}

    def validate(self) -> None:
        from policylab.errors import ConfigError

        n = (self.max_a + 1) * (self.max_b + 1)
        n_test = round(self.test_fraction * n)
        if n > 10**7:
            raise ConfigError(f"max_a, max_b: {n:,} pairs is too many (at most 10,000,000)")
        if not 0 < n_test < n:
            raise ConfigError(f"test_fraction={self.test_fraction} of {n} pairs leaves an empty "
                              f"{'test' if n_test == 0 else 'training'} set; raise max_a/max_b or change it")


@dataclass
class EvalConfig:
    """Settings of ``policylab llm eval`` (greedy accuracy on {prompt, answer} rows)."""

    model: str  # model folder or run folder (its latest checkpoint), or "tiny"
    data: str  # JSONL file with prompt and answer fields
    max_new_tokens: int = 8  # tokens generated per answer

    RANGES: ClassVar[dict] = {"max_new_tokens": "[1, 4096]"}


@dataclass
class MergeConfig:
    """Settings of ``policylab llm merge RUN --out DIR`` (LoRA adapters merged into the base model)."""

    out: str  # folder for the merged model (a plain Hugging Face model folder)


class _KeepUnknown(argparse.ArgumentParser):
    """Keeps unrecognized tokens in ``args.extra`` so the config system can name the unknown field."""

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        ns.extra = list(getattr(ns, "extra", None) or []) + rest
        return ns, []


def _config_class(command: str):
    if command == "make-data":
        return MakeDataConfig
    if command == "eval":
        return EvalConfig
    if command == "merge":
        return MergeConfig
    module, _, config_name = TRAINERS[command]
    return getattr(importlib.import_module(module), config_name)  # imports torch + transformers


def add_parser(subparsers) -> None:
    from policylab.cli import SUMMARY, OneLineParser
    from policylab.config import add_config_arguments

    p = subparsers.add_parser("llm", help=SUMMARY["llm"], description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="llm_command", metavar="{sft,dpo,grpo,reward,make-data,eval,merge}",
                           parser_class=type("LLMParser", (_KeepUnknown, OneLineParser), {}))
    sub.required = True
    helps = {name: f"train with {name.upper()} (fields of {TRAINERS[name][2]} as --field value)" for name in TRAINERS}
    helps |= {"make-data": "write the synthetic addition task's JSONL files",
              "eval": "greedy accuracy of a model on {prompt, answer} JSONL rows",
              "merge": "merge a LoRA run's adapters into its base model (RUN: run or checkpoint folder)"}
    for name, text in helps.items():
        q = sub.add_parser(name, help=text, description=text)
        q.add_argument("--config", metavar="YAML", help="YAML file of config fields (options below win)")
        q.add_argument("--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE",
                       help="set one field (repeatable)")
        if name == "merge":
            q.add_argument("run_dir", metavar="RUN", help="LoRA run folder (its newest verified checkpoint) or checkpoint")
        if name in TRAINERS:
            q.add_argument("--resume", action="store_true",
                           help="continue from the latest checkpoint in output_dir (refused if there is none)")
        q.lazy.append(lambda parser, name=name: add_config_arguments(parser, _config_class(name)))
        q.set_defaults(func=run, extra=[])


def build_config(cls, yaml_path: str | None, overrides: list[str]):
    """Config dataclass from a YAML file plus ``--field value`` tokens (kept for library callers)."""
    from policylab.cli import OneLineParser
    from policylab.config import add_config_arguments, config_from_args

    parser = type("P", (_KeepUnknown, OneLineParser), {})(prog=f"build_config({cls.__name__})")
    add_config_arguments(parser, cls)
    try:
        args = parser.parse_args(overrides)
    except SystemExit:
        from policylab.errors import ConfigError

        raise ConfigError(f"bad override in {overrides!r}") from None
    return config_from_args(cls, args, yaml_path, extra=args.extra)


def run(args) -> int:
    import json
    from pathlib import Path

    from policylab.cli import UsageError, writable_dir
    from policylab.config import config_from_args

    cfg = config_from_args(_config_class(args.llm_command), args, args.config, args.assignments, args.extra)
    if args.llm_command == "make-data":
        from policylab.llm.task import write_addition_data

        writable_dir(cfg.out, "--out")
        files = write_addition_data(cfg.out, cfg.max_a, cfg.max_b, cfg.test_fraction, cfg.seed, cfg.off_by_one)
        for kind, path in files.items():
            print(f"{kind:5s} {path}")
        return 0
    if args.llm_command == "eval" and not Path(cfg.data).is_file():
        raise UsageError(f"--data {cfg.data}: file not found")

    import torch

    torch.set_num_threads(1)
    if args.llm_command == "merge":
        from policylab.llm.models import merge_lora

        writable_dir(cfg.out, "--out")
        print(f"merged {merge_lora(args.run_dir, cfg.out)}")
        return 0
    if args.llm_command == "eval":
        from policylab.llm.data import load_jsonl
        from policylab.llm.models import resolve_model
        from policylab.llm.task import accuracy

        model, tok = resolve_model(cfg.model)
        rows, _ = load_jsonl(cfg.data, ("prompt", "answer"))
        acc = accuracy(model, tok, rows, max_new_tokens=cfg.max_new_tokens)
        print(json.dumps({"accuracy": acc, "n": len(rows)}))
        return 0

    from policylab.llm.checkpoint import latest_checkpoint

    if args.resume and latest_checkpoint(cfg.output_dir) is None:
        raise UsageError(f"--resume: no checkpoint in {cfg.output_dir}")
    writable_dir(cfg.output_dir, "output_dir")
    module, trainer_name, _ = TRAINERS[args.llm_command]
    trainer = getattr(importlib.import_module(module), trainer_name)(cfg.model, None, cfg)
    history = trainer.train(resume_from="latest" if args.resume else None)
    if not trainer.is_main:  # several processes (accelerate launch / torchrun): the main one reports
        return 0
    last = history[-1] if history else {"step": trainer.step}
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in last.items()}))
    print(f"saved {cfg.output_dir}/checkpoint-{trainer.step}")
    return 0
