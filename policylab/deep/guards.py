"""Run guards shared by every policylab.deep trainer's learn loop (one place, not per algorithm):

- :func:`check_finite`: after each iteration, the rewards, losses, gradients and parameters are
  checked for NaN/inf; the first bad one stops the run with a DivergenceError naming the step and
  the quantity — before anything is logged or saved, so the last good checkpoint stays.
- :func:`~policylab.io.interrupt.deferred_interrupt` (re-exported): Ctrl-C (SIGINT) during
  ``learn`` is held until the current iteration ends, so the checkpoint written then is a
  consistent state that resumes exactly; a second Ctrl-C interrupts at once (without saving).
- :func:`run_locks`: the ``RunLock`` of each run directory the loop writes.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from policylab.errors import DivergenceError
from policylab.io.interrupt import deferred_interrupt
from policylab.io.lock import RunLock

__all__ = ["check_finite", "deferred_interrupt", "divergence_quantities", "run_locks"]


def divergence_quantities(agent, metrics: dict):
    """(name, value) pairs the divergence check looks at, in causal order: rewards (episode
    returns so far), logged losses, gradients of every optimizer's parameters, the parameters."""
    yield "reward (running episode return)", agent._ep_return
    for key in ("charts/episodic_return", *sorted(k for k in metrics if k.startswith("losses/"))):
        if metrics.get(key) is not None:
            yield key, metrics[key]
    for name, opt in agent.optimizers.items():
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    yield f"gradient ({name} optimizer)", p.grad
    for name, p in agent.net.named_parameters():
        yield f"parameter {name}", p


def _all_finite(value) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    return bool(np.isfinite(np.asarray(value, dtype=np.float64)).all())


def _quick_all_finite(values) -> bool:
    """True only if every value is finite, at one sum per buffer: parameters and gradients that
    view one flat buffer (``networks.flatten_parameters``) are summed as that whole buffer, once.
    NaN and ±inf propagate into a sum; False (an overflow, a GPU tensor) sends the caller to the
    exact check, which names the culprit. Why: SAC checks after every env step, and 34 per-tensor
    ``isfinite`` calls cost ~1.8 ms of its ~7 ms step."""
    seen = set()
    for v in values:
        if not isinstance(v, torch.Tensor):
            if not _all_finite(v):
                return False
            continue
        if v.device.type != "cpu" or not v.is_floating_point():
            return False
        st = v.untyped_storage()
        if (st.data_ptr(), v.dtype) in seen:
            continue
        seen.add((st.data_ptr(), v.dtype))
        whole = torch.empty(0, dtype=v.dtype).set_(st, 0, (st.nbytes() // v.element_size(),))
        if not np.isfinite(whole.numpy().sum()):
            return False
    return True


def check_finite(agent, metrics: dict) -> None:
    """DivergenceError naming the step and the first non-finite quantity, if any."""
    quantities = list(divergence_quantities(agent, metrics))
    if _quick_all_finite(v for _, v in quantities):
        return
    for name, value in quantities:
        if not _all_finite(value):
            raise DivergenceError(
                f"training diverged at step {agent.num_steps:,} (iteration {agent.iteration}): {name} is NaN/inf; "
                "stopped without logging or saving this iteration (try a smaller learning rate)")


@contextlib.contextmanager
def run_locks(*dirs):
    """Hold the :class:`RunLock` of every directory in ``dirs`` that is not None."""
    with contextlib.ExitStack() as stack:
        for d in dirs:
            if d is not None:
                stack.enter_context(RunLock(d))
        yield
