"""Checkpoints: a directory holding ``checkpoint.json`` and one ``weights-<sha>.safetensors``.

- Tensors (weights, optimizer moments, torch RNG state, last observations) go in safetensors;
  everything else (config, counters, numpy/env RNG states) in JSON. Loading never runs code.
- Self-verifying: ``checkpoint.json`` names the weights file with its SHA-256 and carries
  ``meta_sha256``, the SHA-256 of its own canonical JSON body (sorted keys, no whitespace), so an
  edited or corrupted byte in either file is detected on load.
- Finite: a tensor or JSON number that is NaN/inf is refused on save (:class:`DivergenceError`,
  nothing written) and on load (:class:`CheckpointError`).
- Atomic: the weights file is written under a content-addressed name (temp file + fsync +
  os.replace + fsync of the directory), then ``checkpoint.json`` — the commit point — replaces
  the old one, then stale weight files are removed. A crash at any point leaves either the old or
  the new checkpoint complete; if the JSON write fails, the new weights file is removed again.
  Temp files of writers that died (``kill -9``) are removed by the next save or load.
- One writer: a save holds the directory's :class:`~policylab.io.lock.RunLock`.
- Corruption (missing file, bad JSON, hash mismatch, unreadable safetensors) raises
  :class:`CheckpointError` naming the file. ``policylab-checkpoint-v1`` files (no ``meta_sha256``)
  still load; only their weights are verified.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

from policylab.errors import CheckpointError, DivergenceError
from policylab.io.lock import RunLock

__all__ = ["CheckpointError", "atomic_write_bytes", "check_meta", "fsync_dir", "load_checkpoint", "save_checkpoint"]

FORMAT = "policylab-checkpoint-v2"
FORMATS = ("policylab-checkpoint-v1", FORMAT)
META_FILE = "checkpoint.json"
RESERVED = ("format", "weights", "sha256", "meta_sha256")   # keys the checkpoint writes itself
_WEIGHTS_NAME = re.compile(r"weights-[0-9a-f]{16}\.safetensors")
_TMP_NAME = re.compile(r"\..+\.(\d+)-[a-z0-9_]+\.tmp")       # .<file>.<pid>-<random>.tmp


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (POSIX: fsync the directory itself)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``: a temp file ``.<name>.<pid>-<random>.tmp`` in the same
    directory, fsync, os.replace, fsync of the directory. The temp file never outlives a failure
    of this process; if the process is killed, :func:`remove_stale_temp_files` cleans it later."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a written file gets the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(directory) -> list[Path]:
    """Remove the temp files of :func:`atomic_write_bytes` in ``directory`` whose writer process
    is gone (killed mid-save). Returns the removed paths; an unwritable directory is left alone."""
    removed = []
    for p in Path(directory).glob(".*.tmp"):
        m = _TMP_NAME.fullmatch(p.name)
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


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


def _canonical(doc: dict) -> bytes:
    """The bytes ``meta_sha256`` is computed over: sorted keys, no whitespace, no NaN."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True).encode()


def _nonfinite(obj, where: str) -> str | None:
    """Path (e.g. ``recent_returns[3]``) of the first NaN/inf float in a JSON-like value, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else where
    if isinstance(obj, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, list):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    return next((bad for w, v in items if (bad := _nonfinite(v, w)) is not None), None)


def _first_nonfinite_tensor(tensors: dict) -> str | None:
    import torch

    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def save_checkpoint(path, tensors: dict, meta: dict) -> Path:
    """Write ``tensors`` (str → torch.Tensor) and ``meta`` (JSON-able dict) to directory ``path``.

    Refuses (DivergenceError, nothing written) a NaN/inf in any floating tensor or JSON number,
    so a diverged run never replaces the last good checkpoint."""
    from safetensors.torch import save as st_save

    path = Path(path)
    bad = _first_nonfinite_tensor(tensors)
    if bad is not None:
        raise DivergenceError(f"not saving checkpoint {path}: tensor {bad} holds NaN/inf")
    meta = json.loads(json.dumps({k: v for k, v in meta.items() if k not in RESERVED}, default=_json_default))
    bad = _nonfinite(meta, "")
    if bad is not None:
        raise DivergenceError(f"not saving checkpoint {path}: field {bad} is NaN/inf")
    data = st_save({k: v.detach().contiguous().clone() for k, v in tensors.items()})
    digest = hashlib.sha256(data).hexdigest()
    weights = f"weights-{digest[:16]}.safetensors"
    doc = {"format": FORMAT, "weights": weights, "sha256": digest, **meta}
    doc["meta_sha256"] = hashlib.sha256(_canonical(doc)).hexdigest()
    text = json.dumps(doc, indent=1, allow_nan=False)
    with RunLock(path):
        remove_stale_temp_files(path)
        new_weights = not (path / weights).exists()  # the same bytes may already be the current weights
        atomic_write_bytes(path / weights, data)
        try:
            atomic_write_bytes(path / META_FILE, text.encode())
        except BaseException:
            if new_weights:
                (path / weights).unlink(missing_ok=True)
            raise
        for stale in path.glob("weights-*.safetensors"):
            if stale.name != weights:
                stale.unlink(missing_ok=True)
    return path


def load_checkpoint(path) -> tuple[dict, dict]:
    """Read a checkpoint directory (or its ``checkpoint.json``) → (tensors, meta).

    Verifies the weights' SHA-256 and (format v2) the JSON's own ``meta_sha256``, and that every
    floating tensor is finite; CheckpointError naming the file otherwise."""
    from safetensors.torch import load as st_load

    path = Path(path)
    if path.is_file() and path.name == META_FILE:
        path = path.parent
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"no checkpoint at {path} (missing {META_FILE})")
    remove_stale_temp_files(path)
    try:
        meta = json.loads(meta_path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"corrupt checkpoint {meta_path}: invalid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
        raise CheckpointError(f"{meta_path} is not a policylab checkpoint (format {', '.join(FORMATS)})")
    if meta["format"] == FORMAT:
        body = {k: v for k, v in meta.items() if k != "meta_sha256"}
        try:
            ok = hashlib.sha256(_canonical(body)).hexdigest() == meta.get("meta_sha256")
        except ValueError:  # NaN/inf in the JSON
            ok = False
        if not ok:
            raise CheckpointError(f"corrupt checkpoint: {meta_path} does not match its meta_sha256 "
                                  "(edited or damaged)")
    name = meta.get("weights")
    if not isinstance(name, str) or not _WEIGHTS_NAME.fullmatch(name) or not isinstance(meta.get("sha256"), str):
        raise CheckpointError(f"corrupt checkpoint {meta_path}: bad 'weights'/'sha256' fields")
    weights = path / name
    if not weights.is_file():
        raise CheckpointError(f"corrupt checkpoint {path}: weights file {name!r} missing")
    data = weights.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"corrupt checkpoint: {weights} does not match its SHA-256 in {META_FILE}")
    try:
        tensors = st_load(data)
    except Exception as exc:  # noqa: BLE001 (safetensors raises its own error types)
        raise CheckpointError(f"corrupt checkpoint {weights}: {exc}") from None
    bad = _first_nonfinite_tensor(tensors)
    if bad is not None:
        raise CheckpointError(f"checkpoint {weights}: tensor {bad} holds NaN/inf (saved from a diverged run)")
    bad = _nonfinite(meta, "")
    if bad is not None:
        raise CheckpointError(f"checkpoint {meta_path}: field {bad} is NaN/inf")
    return tensors, meta


def check_meta(meta: dict, schema: dict, where) -> None:
    """Check ``meta`` against ``schema`` (key → allowed type or tuple of types; ``int`` fields must
    be ≥ 0; keys marked optional with a trailing ``?``). Unknown keys, missing keys and wrong
    types raise CheckpointError naming the field and ``where`` (the file)."""
    fields = {k.rstrip("?"): (t, k.endswith("?")) for k, t in schema.items()}
    for key in meta:
        if key not in fields and key not in RESERVED:
            raise CheckpointError(f"{where}: unknown field {key!r}")
    for key, (types, optional) in fields.items():
        if key not in meta:
            if optional:
                continue
            raise CheckpointError(f"{where}: field {key!r} is missing")
        value = meta[key]
        types = types if isinstance(types, tuple) else (types,)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if ok and isinstance(value, int) and not isinstance(value, bool) and value < 0:
            ok = False
        if not ok:
            names = " or ".join("null" if t is type(None) else ("non-negative int" if t is int else t.__name__)
                                for t in types)
            raise CheckpointError(f"{where}: field {key!r} must be {names}, got {value!r:.60}")
