"""Checkpoints (safetensors + JSON, atomic, never pickle) and run logs (CSV + TensorBoard)."""

from policylab.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from policylab.io.logger import STANDARD_KEYS, RunLogger

__all__ = ["STANDARD_KEYS", "CheckpointError", "RunLogger", "load_checkpoint", "save_checkpoint"]
