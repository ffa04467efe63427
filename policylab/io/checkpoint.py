"""Checkpoints: a directory holding ``checkpoint.json`` and one ``weights-<sha>.safetensors``.

- Tensors (weights, optimizer moments, torch RNG state, last observations) go in safetensors;
  everything else (config, counters, numpy/env RNG states) in JSON. Loading never runs code.
- Atomic: the weights file is written under a content-addressed name (temp file + os.replace),
  then ``checkpoint.json`` — which names that file and its SHA-256 — replaces the old one
  (the commit point), then stale weight files are removed. A crash at any point leaves either
  the old or the new checkpoint complete.
- Corruption (missing file, bad JSON, hash mismatch, unreadable safetensors) raises
  :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from policylab.errors import CheckpointError

__all__ = ["CheckpointError", "atomic_write_bytes", "load_checkpoint", "save_checkpoint"]

FORMAT = "policylab-checkpoint-v1"
META_FILE = "checkpoint.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory + os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(x):
    import numpy as np

    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, set)):
        return list(x)
    raise TypeError(f"not JSON-serializable in a checkpoint: {type(x).__name__}")


def save_checkpoint(path, tensors: dict, meta: dict) -> Path:
    """Write ``tensors`` (str → torch.Tensor) and ``meta`` (JSON-able dict) to directory ``path``."""
    from safetensors.torch import save as st_save

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    data = st_save({k: v.detach().contiguous().clone() for k, v in tensors.items()})
    digest = hashlib.sha256(data).hexdigest()
    weights = f"weights-{digest[:16]}.safetensors"
    atomic_write_bytes(path / weights, data)
    doc = {"format": FORMAT, "weights": weights, "sha256": digest, **meta}
    text = json.dumps(doc, indent=1, default=_json_default, allow_nan=False)
    atomic_write_bytes(path / META_FILE, text.encode())
    for stale in path.glob("weights-*.safetensors"):
        if stale.name != weights:
            stale.unlink(missing_ok=True)
    return path


def load_checkpoint(path) -> tuple[dict, dict]:
    """Read a checkpoint directory (or its ``checkpoint.json``) → (tensors, meta). Verifies the hash."""
    from safetensors.torch import load as st_load

    path = Path(path)
    if path.is_file() and path.name == META_FILE:
        path = path.parent
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"no checkpoint at {path} (missing {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"corrupt checkpoint {meta_path}: invalid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not a {FORMAT} file")
    weights = path / str(meta.get("weights", ""))
    if not weights.is_file() or weights.parent != path:
        raise CheckpointError(f"corrupt checkpoint {path}: weights file {meta.get('weights')!r} missing")
    data = weights.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"corrupt checkpoint: {weights} does not match its SHA-256 in {META_FILE}")
    try:
        tensors = st_load(data)
    except Exception as exc:  # noqa: BLE001 (safetensors raises its own error types)
        raise CheckpointError(f"corrupt checkpoint {weights}: {exc}") from None
    return tensors, meta
