"""`policylab llm`: SFT, DPO and GRPO on Hugging Face causal LMs (offline), and the synthetic task.

    policylab llm make-data --out data/                         # addition task: sft/dpo/grpo/test.jsonl
    policylab llm sft  --config configs/llm/sft.yaml            # YAML fields = SFTConfig fields
    policylab llm grpo --config configs/llm/grpo.yaml --learning_rate 1e-3 --max_steps 50
    policylab llm dpo  --model runs/llm/sft --train_file data/dpo.jsonl --resume
    policylab llm eval --model runs/llm/grpo --data data/test.jsonl    # greedy accuracy

Every config field can be set in the YAML file or overridden with --field value (or --field=value;
dashes and underscores are equivalent; lists as a,b or [a, b]). --model tiny builds the tiny
Llama; a run folder (with checkpoint-N inside) loads its latest checkpoint.
"""

from __future__ import annotations

import argparse

from policylab.errors import InputError, MissingFileError

TRAINERS = {"sft": ("policylab.llm.supervised", "SFTTrainer", "SFTConfig"),
            "dpo": ("policylab.llm.dpo", "DPOTrainer", "DPOConfig"),
            "grpo": ("policylab.llm.grpo", "GRPOTrainer", "GRPOConfig")}


class _KeepUnknown(argparse.ArgumentParser):
    """A sub-parser that hands unknown ``--field value`` pairs to ``run`` as ``args.overrides``."""

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        ns.overrides = list(getattr(ns, "overrides", None) or []) + rest
        return ns, []


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("llm", help="SFT / DPO / GRPO on causal language models (offline)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="llm_command", metavar="{sft,dpo,grpo,make-data,eval}",
                           parser_class=_KeepUnknown)
    sub.required = True
    for name in TRAINERS:
        q = sub.add_parser(name, help=f"train with {name.upper()} (fields of {TRAINERS[name][2]} as --key value)")
        q.add_argument("--config", metavar="YAML", help="config file (fields of the config dataclass)")
        q.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
        q.set_defaults(func=run, overrides=[])
    q = sub.add_parser("make-data", help="write the synthetic addition task's JSONL files")
    q.add_argument("--out", default="data", help="output folder (default data/)")
    q.add_argument("--max-a", type=int, default=99, help="first operand in [0, max_a] (default 99)")
    q.add_argument("--max-b", type=int, default=9, help="second operand in [0, max_b] (default 9)")
    q.add_argument("--test-fraction", type=float, default=0.2, help="held-out pairs (default 0.2)")
    q.add_argument("--off-by-one", type=float, default=0.6,
                   help="fraction of SFT answers the noisy teacher gives as a+b+1 (default 0.6)")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=run, overrides=[])
    q = sub.add_parser("eval", help="greedy accuracy of a model on {prompt, answer} JSONL rows")
    q.add_argument("--model", required=True, help="model folder or run folder")
    q.add_argument("--data", required=True, help="JSONL with prompt and answer fields")
    q.add_argument("--max-new-tokens", type=int, default=8)
    q.set_defaults(func=run, overrides=[])


def _coerce(name: str, hint, value):
    """Convert a YAML/CLI value to the dataclass field type ``hint`` (a typing annotation)."""
    import typing

    import yaml

    origin, targs = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in targs:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(name, next(a for a in targs if a is not type(None)), value)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
        if not isinstance(value, (list, tuple)):
            value = [value]
        items = [_coerce(name, targs[0], v) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise InputError(f"--{name} expects true/false, got {value!r}")
            return value.lower() in ("true", "1", "yes")
        return bool(value)
    if hint in (int, float):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"--{name} expects a number, got {value!r}") from None
        if hint is int and not number.is_integer():
            raise InputError(f"--{name} expects an integer, got {value!r}")
        return int(number) if hint is int else number
    return str(value)


def build_config(cls, yaml_path: str | None, overrides: list[str]):
    """Config dataclass from a YAML file plus ``--field value`` overrides (CLI wins)."""
    import dataclasses
    import typing
    from pathlib import Path

    import yaml

    from policylab.cli import UsageError

    values: dict = {}
    if yaml_path:
        path = Path(yaml_path)
        if not path.is_file():
            raise MissingFileError(f"config file {yaml_path!r} not found")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise UsageError(f"{yaml_path}: expected a mapping of config fields")
    i = 0
    while i < len(overrides):
        tok = overrides[i]
        if not tok.startswith("--"):
            raise UsageError(f"unexpected argument {tok!r} (overrides are --field value)")
        key, eq, val = tok[2:].partition("=")
        if not eq:
            if i + 1 >= len(overrides) or overrides[i + 1].startswith("--"):
                raise UsageError(f"--{key} needs a value")
            i, val = i + 1, overrides[i + 1]
        values[key.replace("-", "_")] = val
        i += 1
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UsageError(f"unknown config field {unknown[0]!r} for {cls.__name__}; fields: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(k, hints[k], v) for k, v in values.items()}
    return cls(**kwargs)


def run(args) -> int:
    import importlib
    import json

    if args.llm_command == "make-data":
        from policylab.llm.task import write_addition_data

        files = write_addition_data(args.out, args.max_a, args.max_b, args.test_fraction, args.seed, args.off_by_one)
        for kind, path in files.items():
            print(f"{kind:5s} {path}")
        return 0

    import torch

    torch.set_num_threads(1)
    if args.llm_command == "eval":
        from policylab.llm.data import load_jsonl
        from policylab.llm.models import resolve_model
        from policylab.llm.task import accuracy

        model, tok = resolve_model(args.model)
        rows, _ = load_jsonl(args.data, ("prompt", "answer"))
        acc = accuracy(model, tok, rows, max_new_tokens=args.max_new_tokens)
        print(json.dumps({"accuracy": acc, "n": len(rows)}))
        return 0

    module, trainer_name, config_name = TRAINERS[args.llm_command]
    mod = importlib.import_module(module)
    config = build_config(getattr(mod, config_name), args.config, args.overrides)
    trainer = getattr(mod, trainer_name)(config.model, None, config)
    history = trainer.train(resume_from="latest" if args.resume else None)
    last = history[-1] if history else {"step": trainer.step}
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in last.items()}))
    print(f"saved {config.output_dir}/checkpoint-{trainer.step}")
    return 0
