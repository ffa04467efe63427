"""Model resolution and loading: "tiny", a local Hugging Face folder, a run folder, or an in-memory
model; the frozen reference model. Never downloads, never unpickles.

A folder's problems are user errors named in one line (:class:`~policylab.errors.CheckpointError`):
an unreadable ``config.json``, pickle-only weights (``pytorch_model.bin``), weights that do not load.
A run folder (``checkpoint-N`` inside) loads its newest checkpoint that verifies its hashes.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from policylab.errors import CheckpointError, ConfigError, InputError, MissingFileError
from policylab.llm.checkpoint import (
    MANIFEST,
    latest_checkpoint,
    read_trainer_state,
    verify_checkpoint,
)

__all__ = ["AdapterDisabled", "add_lora", "check_model_folder", "frozen_copy", "load_pretrained", "max_positions",
           "merge_lora", "reference_model", "resolve_model"]

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def check_model_folder(folder: Path) -> Path:
    """Raise CheckpointError naming the file when ``folder`` is not a loadable safetensors model folder:
    config.json missing or not a JSON object, or weights only in pickle files (``*.bin``, ``*.pt``).
    A folder with ``manifest.json`` (a policylab checkpoint) must also verify its hashes."""
    if (folder / MANIFEST).exists():
        verify_checkpoint(folder)
    config = folder / "config.json"
    if not config.is_file() and not (folder / "adapter_config.json").is_file():
        raise CheckpointError(f"model folder {folder} has no config.json")
    for cfg in (config, folder / "adapter_config.json"):
        if cfg.is_file():
            try:
                doc = json.loads(cfg.read_text())
            except (ValueError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"{cfg}: not a valid JSON config ({exc})") from None
            if not isinstance(doc, dict):
                raise CheckpointError(f"{cfg}: not a valid JSON config (not an object)")
    if not any((folder / name).is_file() for name in SAFE_WEIGHTS):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        what = f"only pickle weights ({', '.join(pickles)}), which policylab never loads" if pickles else "no weights"
        raise CheckpointError(f"model folder {folder} has {what}: save it with safetensors "
                              "(model.save_pretrained(dir, safe_serialization=True))")
    return folder


def load_pretrained(auto_class, folder: Path, **kwargs):
    """``auto_class.from_pretrained(folder)`` from local safetensors only, errors as CheckpointError."""
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return auto_class.from_pretrained(folder, local_files_only=True, use_safetensors=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot load model folder {folder}: {first}") from None
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def _model_folder(model) -> Path:
    folder = Path(model)
    if not folder.is_dir():
        raise MissingFileError(f"model folder {str(model)!r} not found (give a local folder or 'tiny')")
    if not (folder / "config.json").exists() and not (folder / "adapter_config.json").exists():
        latest = latest_checkpoint(folder)  # a run folder: its newest checkpoint that verifies
        if latest is not None:
            return latest
        if any(folder.glob("checkpoint-*")):
            raise CheckpointError(f"run folder {folder} has no checkpoint that verifies")
    return check_model_folder(folder)


def resolve_model(model, tokenizer=None, seed: int = 0, kind: str = "causal", before_weights=None):
    """(model, tokenizer) from an in-memory model, a local folder path, or "tiny". Never downloads.

    ``kind``: "causal" (``AutoModelForCausalLM``, the policy) or "reward"
    (``AutoModelForSequenceClassification`` with one label, a reward model; from a causal LM's folder,
    e.g. the SFT run, it starts from that model's backbone with a fresh score head, as InstructGPT's). ``before_weights(tokenizer)``
    runs once the tokenizer is known and before any weights are built or read (data checks)."""
    if kind not in ("causal", "reward"):
        raise InputError(f"kind must be 'causal' or 'reward', got {kind!r}")

    def check(tok):  # before any weights: the tokenizer's own checks, then the caller's
        if tok.pad_token_id is None:
            raise InputError("the tokenizer has no pad token: set tokenizer.pad_token (e.g. to eos_token) first")
        if tok.eos_token_id is None:
            raise InputError("the tokenizer has no eos token: completions could never end")
        if before_weights is not None:
            before_weights(tok)

    if isinstance(model, (str, os.PathLike)):
        if str(model) == "tiny":
            from policylab.llm import tiny

            tokenizer = tokenizer or tiny.make_char_tokenizer()
            check(tokenizer)
            make = tiny.make_tiny_llama if kind == "causal" else tiny.make_tiny_reward_model
            model = make(len(tokenizer), seed=seed)
        else:
            from transformers import (
                AutoModelForCausalLM,
                AutoModelForSequenceClassification,
                AutoTokenizer,
            )

            folder = _model_folder(model)
            if tokenizer is None:
                try:
                    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                except (OSError, ValueError, KeyError) as exc:
                    raise CheckpointError(f"cannot load the tokenizer of {folder}: {str(exc).splitlines()[0]}") from None
            check(tokenizer)
            if kind == "causal":
                model = load_pretrained(AutoModelForCausalLM, folder)
            else:  # one label; a causal LM's folder gives its backbone and a fresh score head (InstructGPT's RM init)
                model = load_pretrained(AutoModelForSequenceClassification, folder, num_labels=1)
    else:
        if tokenizer is None:
            raise InputError("an in-memory model needs its tokenizer")
        check(tokenizer)
    return model, tokenizer


def max_positions(model) -> int | None:
    """The model's context length (``config.max_position_embeddings``), or None when it has none."""
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


def frozen_copy(model):
    """Reference model: an in-memory deep copy in eval mode with requires_grad off."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


# ------------------------------------------------------------------------------- LoRA (PEFT)


def add_lora(model, config, kind: str = "causal"):
    """Wrap ``model`` with LoRA adapters from the config's lora_* fields (``peft.get_peft_model``);
    only the adapters (and a reward model's score head) train. Target modules that match nothing
    are a ConfigError naming the field. A model that already carries adapters keeps them. Adapted
    linear layers run :func:`policylab.llm.lora.lora_linear` (one ``addmm``, PEFT's numbers)."""
    from peft import LoraConfig, get_peft_model

    from policylab.llm.lora import fuse_lora_layers

    if hasattr(model, "disable_adapter"):
        return fuse_lora_layers(model)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.lora_target_modules,
                      task_type="CAUSAL_LM" if kind == "causal" else "SEQ_CLS")
    try:
        return fuse_lora_layers(get_peft_model(model, lora))
    except ValueError as exc:
        raise ConfigError(f"lora_target_modules={config.lora_target_modules!r}: {str(exc).splitlines()[0]}") from None



class AdapterDisabled:
    """The reference model of a LoRA run: the same module called with its adapters disabled, without
    gradient. Holds no tensors of its own (``parameters()`` is empty)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, *args, **kwargs):
        import torch

        with torch.no_grad(), self.model.disable_adapter():
            return self.model(*args, **kwargs)

    def parameters(self):
        return iter(())


def reference_model(model):
    """π_ref: the base model with adapters disabled for a PEFT model, else a frozen deep copy."""
    return AdapterDisabled(model) if hasattr(model, "disable_adapter") else frozen_copy(model)


def merge_lora(run, out) -> Path:
    """Merge a LoRA run's adapters into its base model and write a plain model folder to ``out``
    (``policylab llm merge RUN --out DIR``). ``run``: a run folder or one checkpoint folder."""
    from peft import PeftModel

    folder = _model_folder(run)
    if not (folder / "adapter_config.json").is_file():
        raise CheckpointError(f"{folder} holds no LoRA adapters (no adapter_config.json): nothing to merge")
    config = read_trainer_state(folder)["config"]
    base, tokenizer = resolve_model(config["model"], seed=config["seed"])
    merged = PeftModel.from_pretrained(base, folder).merge_and_unload()
    out = Path(out)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
