"""Atomic, resumable checkpoints: weights via save_pretrained (safetensors), optimizer tensors and
RNG states in safetensors, everything else in trainer_state.json. Never pickle."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from policylab.errors import InputError
from policylab.io.checkpoint import atomic_write_bytes

__all__ = ["latest_checkpoint", "load_checkpoint", "save_checkpoint"]


def _atomic_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1).encode())


def save_checkpoint(directory, model, tokenizer, optimizer, step: int, config, extra: dict | None = None) -> Path:
    """Write ``directory`` atomically: weights (save_pretrained, safetensors), tokenizer,
    optimizer tensors + RNG states (safetensors), and trainer_state.json (step, config, RNG, extra).
    Written into a temporary sibling folder that is renamed into place at the end."""
    final = Path(directory)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # our own tqdm bar is the only one
    try:
        model.save_pretrained(tmp)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(tmp)
    opt = optimizer.state_dict()
    tensors = {"rng.torch": torch.get_rng_state()}
    for idx, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "trainer_state.safetensors"))
    np_state = np.random.get_state()
    state = {
        "step": step,
        "config": dataclasses.asdict(config),
        "param_groups": opt["param_groups"],
        "rng_python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        **(extra or {}),
    }
    _atomic_json(tmp / "trainer_state.json", state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def load_checkpoint(directory, model, optimizer) -> dict:
    """Restore weights, optimizer and RNG states from :func:`save_checkpoint`; returns the state dict."""
    directory = Path(directory)
    state = json.loads((directory / "trainer_state.json").read_text())
    weights = load_file(str(directory / "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = getattr(model, "_tied_weights_keys", None) or {}  # save_pretrained drops tied copies
    missing = [k for k in missing if k not in tied]
    if unexpected or missing:
        raise InputError(f"checkpoint {directory} does not match the model: missing {missing}, unexpected {unexpected}")
    tensors = load_file(str(directory / "trainer_state.safetensors"))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    p = state["rng_python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    n = state["rng_numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    return state


def latest_checkpoint(output_dir) -> Path | None:
    """The complete ``checkpoint-<step>`` folder with the highest step, or None."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)
