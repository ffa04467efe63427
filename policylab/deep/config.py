"""Config plumbing for the deep agents: re-exported from :mod:`policylab.config`, the one config
system shared by ``train``, ``learn``, ``llm`` and ``sweep`` (see its docstring)."""

from policylab.config import (
    PRESET_DIR,
    check,
    check_fields,
    load_preset,
    make_config,
    preset_path,
)

__all__ = ["PRESET_DIR", "check", "check_fields", "load_preset", "make_config", "preset_path"]
