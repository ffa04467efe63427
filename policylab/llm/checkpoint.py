"""Atomic, self-verifying, resumable checkpoints: weights via save_pretrained (safetensors), optimizer
tensors and RNG states in safetensors, everything else in trainer_state.json. Never pickle.

Integrity (the RL checkpoints' scheme, :mod:`policylab.io.checkpoint`): every file of the folder is
hashed (SHA-256) into ``manifest.json``, written last; the folder is assembled under a temporary
name and renamed into place, then its parent is fsynced. :func:`verify_checkpoint` re-hashes every
file before anything is loaded, so a flipped byte, a truncated file or a missing one raises
:class:`~policylab.errors.CheckpointError` naming the file; :func:`latest_checkpoint` skips folders
that do not verify (with a warning naming them), so ``--resume`` falls back to the newest good one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policylab.errors import CheckpointError
from policylab.io.checkpoint import atomic_write_bytes, fsync_dir

__all__ = [
    "MANIFEST",
    "checkpoint_step",
    "latest_checkpoint",
    "load_checkpoint",
    "read_trainer_state",
    "save_checkpoint",
    "verify_checkpoint",
]

MANIFEST = "manifest.json"
FORMAT = "policylab-llm-checkpoint-v1"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(directory, model, tokenizer, optimizer, step: int, config, extra: dict | None = None) -> Path:
    """Write ``directory`` atomically: weights (save_pretrained, safetensors), tokenizer,
    optimizer tensors + RNG states (safetensors), trainer_state.json (step, config, RNG, extra), and
    last ``manifest.json`` (SHA-256 of every other file). Assembled in a temporary sibling folder
    that is renamed into place at the end; a crash leaves only that ``.checkpoint-N.tmp`` folder,
    which the next save removes."""
    final = Path(directory)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        from transformers.utils import logging as hf_logging

        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # our own tqdm bar is the only one
        try:
            model.save_pretrained(tmp)
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        tokenizer.save_pretrained(tmp)
        _save_trainer_state(tmp, optimizer, step, config, extra)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {"format": FORMAT, "step": step,
                    "files": {str(p.relative_to(tmp)): _sha256(p) for p in files}}
        atomic_write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _save_trainer_state(folder: Path, optimizer, step: int, config, extra: dict | None) -> None:
    from safetensors.torch import save_file

    opt = optimizer.state_dict()
    tensors = {"rng.torch": torch.get_rng_state()}
    for idx, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "trainer_state.safetensors"))
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "step": step,
        "config": dataclasses.asdict(config),
        "param_groups": opt["param_groups"],
        "rng_python": [py_state[0], list(py_state[1]), py_state[2]],
        "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        **(extra or {}),
    }
    atomic_write_bytes(folder / "trainer_state.json", json.dumps(state, indent=1, allow_nan=False).encode())


def verify_checkpoint(directory) -> Path:
    """Re-hash every file listed in ``manifest.json``; raise CheckpointError naming the first file
    that is missing, truncated or altered (or the manifest itself). Returns the folder."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {MANIFEST}: incomplete, or not written by policylab")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        assert manifest["format"] == FORMAT and isinstance(files, dict)
    except (ValueError, KeyError, TypeError, AssertionError, UnicodeDecodeError):
        raise CheckpointError(f"corrupt checkpoint manifest {path}") from None
    for name, digest in files.items():
        f = directory / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise CheckpointError(f"{path} names a file outside the checkpoint: {name!r}")
        if not f.is_file():
            raise CheckpointError(f"corrupt checkpoint: {f} is missing")
        if _sha256(f) != digest:
            raise CheckpointError(f"corrupt checkpoint: {f} does not match its SHA-256 in {MANIFEST}")
    return directory


def read_trainer_state(directory) -> dict:
    """trainer_state.json of a (verified) checkpoint folder; CheckpointError naming the file if unreadable."""
    path = Path(directory) / "trainer_state.json"
    try:
        state = json.loads(path.read_text())
        int(state["step"])
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"corrupt checkpoint file {path}: {exc}") from None
    return state


def load_checkpoint(directory, model, optimizer) -> dict:
    """Verify, then restore weights, optimizer and RNG states from :func:`save_checkpoint`; returns the state."""
    from safetensors.torch import load_file

    directory = verify_checkpoint(directory)
    state = read_trainer_state(directory)
    adapters = directory / "adapter_model.safetensors"
    try:
        if adapters.is_file():  # a LoRA run: only the adapters (and modules_to_save) are stored
            from peft import set_peft_model_state_dict

            if not hasattr(model, "disable_adapter"):
                raise CheckpointError(f"checkpoint {directory} holds LoRA adapters: resume it with use_peft true")
            unexpected = set_peft_model_state_dict(model, load_file(str(adapters))).unexpected_keys
            missing = []
        else:
            weights = load_file(str(directory / "model.safetensors"))
            missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # shape mismatch: another architecture
        raise CheckpointError(f"checkpoint {directory} does not match the model: {str(exc).splitlines()[0]}") from None
    tied = getattr(model, "_tied_weights_keys", None) or {}  # save_pretrained drops tied copies
    missing = [k for k in missing if k not in tied]
    if unexpected or missing:
        raise CheckpointError(f"checkpoint {directory} does not match the model: missing {missing}, unexpected {unexpected}")
    tensors = load_file(str(directory / "trainer_state.safetensors"))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {directory}: optimizer state does not match ({exc})") from None
    torch.set_rng_state(tensors["rng.torch"])
    p = state["rng_python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    n = state["rng_numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    return state


def checkpoint_step(path: Path) -> int:
    """N of a ``checkpoint-N`` folder (-1 if the name has no integer step)."""
    try:
        return int(path.name.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def latest_checkpoint(output_dir, verify: bool = True) -> Path | None:
    """The ``checkpoint-<step>`` folder with the highest step that verifies, or None.

    A newer folder that fails :func:`verify_checkpoint` is skipped with a warning naming it and the
    reason, so a resume falls back to the newest complete checkpoint (and says so)."""
    found = sorted((p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) >= 0),
                   key=checkpoint_step, reverse=True)
    for path in found:
        if not verify:
            return path
        try:
            return verify_checkpoint(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping {path}: {exc}; falling back to an older checkpoint", stacklevel=2)
    return None
