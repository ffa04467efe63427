"""One writer per run directory: an exclusive ``flock`` on ``<run>/.lock``, which holds the pid.

The kernel releases a ``flock`` when its process dies (even by ``kill -9``), so a lock left by
a dead run is stale by construction and the next run takes it over; a live writer makes the
second one fail at once with :class:`~policylab.errors.RunLockedError` naming its pid.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import ClassVar

from policylab.errors import RunLockedError, UsageError

__all__ = ["LOCK_FILE", "RunLock"]

LOCK_FILE = ".lock"


class RunLock:
    """``with RunLock(run_dir):`` — hold the directory's write lock for the block.

    Creates ``run_dir`` if needed. Re-entrant within one process (a nested lock on the same
    directory is a no-op), so library calls that lock may run inside a CLI command that did.
    """

    _held: ClassVar[dict[str, int]] = {}  # resolved path -> nesting depth in this process

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self._fd: int | None = None
        self._key: str | None = None

    def acquire(self) -> RunLock:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UsageError(f"run directory {str(self.run_dir)!r} is an existing file")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create run directory {str(self.run_dir)!r}: {exc.strerror}") from None
        key = str(self.run_dir.resolve())
        if key in RunLock._held:
            RunLock._held[key] += 1
            self._key = key
            return self
        path = self.run_dir / LOCK_FILE
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UsageError(f"cannot write run directory {str(self.run_dir)!r}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunLockedError(f"{self.run_dir} is being written by {owner}; "
                                     "wait for it to finish or choose another output directory") from None
            try:  # the file we locked may have been unlinked by a releasing writer: retry then
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        os.fsync(fd)
        self._fd, self._key = fd, key
        RunLock._held[key] = 1
        return self

    def release(self) -> None:
        if self._key is None:
            return
        RunLock._held[self._key] -= 1
        if RunLock._held[self._key] == 0:
            del RunLock._held[self._key]
            if self._fd is not None:
                try:
                    os.unlink(self.run_dir / LOCK_FILE)
                except FileNotFoundError:
                    pass
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
        self._fd = self._key = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
