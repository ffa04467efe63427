"""Ctrl-C at a safe point: training loops (deep RL and LLM trainers) hold a first SIGINT until the
current iteration or optimizer step ends, save a checkpoint of that consistent state, then stop.
"""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["deferred_interrupt"]


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
