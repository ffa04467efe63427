"""Run guards shared by every policylab.deep trainer's learn loop (one place, not per algorithm):

- :func:`check_finite`: after each iteration, the rewards, losses, gradients and parameters are
  checked for NaN/inf; the first bad one stops the run with a DivergenceError naming the step and
  the quantity — before anything is logged or saved, so the last good checkpoint stays.
- :func:`deferred_interrupt`: Ctrl-C (SIGINT) during ``learn`` is held until the current
  iteration ends, so the checkpoint written then is a consistent state that resumes exactly; a
  second Ctrl-C interrupts at once (without saving).
- :func:`run_locks`: the ``RunLock`` of each run directory the loop writes.
"""

from __future__ import annotations

import contextlib
import signal
import threading

import numpy as np
import torch

from policylab.errors import DivergenceError
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


def check_finite(agent, metrics: dict) -> None:
    """DivergenceError naming the step and the first non-finite quantity, if any."""
    for name, value in divergence_quantities(agent, metrics):
        if not _all_finite(value):
            raise DivergenceError(
                f"training diverged at step {agent.num_steps:,} (iteration {agent.iteration}): {name} is NaN/inf; "
                "stopped without logging or saving this iteration (try a smaller learning rate)")


@contextlib.contextmanager
def deferred_interrupt():
    """``with deferred_interrupt() as pending:`` — a first SIGINT sets ``pending[0]`` instead of
    raising; the loop checks it at the end of an iteration. A second SIGINT raises at once.
    Outside the main thread (no signal handlers there) this does nothing."""
    pending = [False]
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def handler(signum, frame):
        if pending[0]:
            raise KeyboardInterrupt
        pending[0] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield pending
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


@contextlib.contextmanager
def run_locks(*dirs):
    """Hold the :class:`RunLock` of every directory in ``dirs`` that is not None."""
    with contextlib.ExitStack() as stack:
        for d in dirs:
            if d is not None:
                stack.enter_context(RunLock(d))
        yield
