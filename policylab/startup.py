"""Process start-up: skip torch's lazy ``torch._dynamo`` import in processes that never compile.

torch wraps several ``Optimizer`` methods (``add_param_group``, ``zero_grad``, ``state_dict``, …) in
``torch._compile._disable_dynamo``, whose first call imports ``torch._dynamo`` (~2 s of wall time,
more than a whole short PPO run). The wrapper only matters under ``torch.compile``; policylab's own
processes — the ``policylab`` command and a sweep's Ray workers — never compile, so they call
:func:`skip_optimizer_dynamo` first. Library code never does: a user's process may compile.
"""

from __future__ import annotations

import sys

__all__ = ["skip_optimizer_dynamo"]


def skip_optimizer_dynamo() -> None:
    """Let ``torch.optim.Optimizer``'s methods skip their ``_disable_dynamo`` wrapper in this process
    (now if torch's optimizer module is loaded, else as soon as it is imported)."""
    module = sys.modules.get("torch.optim.optimizer")
    if module is not None:
        _unwrap(module)
    elif not any(isinstance(f, _NoDynamoOptimizers) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoDynamoOptimizers())


def _unwrap(module) -> None:
    for fn in vars(getattr(module, "Optimizer", object)).values():
        code = getattr(fn, "__code__", None)
        inner = getattr(fn, "__wrapped__", None)
        wrapped = inner is not None and code is not None and code.co_filename.endswith("_compile.py")
        if wrapped and getattr(inner, "__dynamo_disable", None) is None:
            setattr(inner, "__dynamo_disable", inner)  # torch caches the "disabled" function there


class _NoDynamoOptimizers:
    """Import hook: unwraps the Optimizer methods when ``torch.optim.optimizer`` is first imported."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch.optim.optimizer":
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_unwrap(module):
            exec_module(module)
            _unwrap(module)

        spec.loader.exec_module = exec_and_unwrap
        return spec
