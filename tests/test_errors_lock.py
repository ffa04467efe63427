"""Typed errors at the CLI boundary and the one-writer run-directory lock."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from policylab.cli import main
from policylab.errors import (
    CheckpointError,
    ConfigError,
    InputError,
    InvalidMDPError,
    PolicylabError,
    RunLockedError,
    UsageError,
)
from policylab.io.lock import LOCK_FILE, RunLock


def test_error_types_keep_their_builtin_bases():
    for cls in (InputError, UsageError, ConfigError, InvalidMDPError, CheckpointError):
        assert issubclass(cls, PolicylabError) and issubclass(cls, ValueError)
    assert issubclass(RunLockedError, PolicylabError)


def test_cli_turns_user_errors_into_one_line_exit_2(capsys, tmp_path):
    missing = tmp_path / "no-such-run"
    assert main(["plot", str(missing), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "Traceback" not in err


def test_cli_lets_bugs_show_their_traceback(monkeypatch):
    from policylab.cli import plan

    def boom(args):
        raise ValueError("an internal bug, not bad input")

    monkeypatch.setattr(plan, "run", boom)
    with pytest.raises(ValueError, match="internal bug"):
        main(["plan", "--mdp", "line-world"])


def _hold(path, ready, release):
    with RunLock(path):
        ready.set()
        release.wait(30)


def test_second_writer_fails_at_once_naming_the_pid(tmp_path):
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(tmp_path, ready, release))
    proc.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        release.set()
        proc.join(30)
    with RunLock(tmp_path):  # released: the next writer gets it
        assert (tmp_path / LOCK_FILE).read_text().startswith(f"pid {os.getpid()}")
    assert not (tmp_path / LOCK_FILE).exists()


def test_lock_of_a_killed_process_is_stale(tmp_path):
    code = (f"from policylab.io.lock import RunLock; import time; RunLock({str(tmp_path)!r}).acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(RunLockedError):
        RunLock(tmp_path).acquire()
    proc.kill()
    proc.wait(30)
    assert (tmp_path / LOCK_FILE).exists()  # left behind by kill -9 ...
    with RunLock(tmp_path):                 # ... and taken over
        pass


def test_lock_is_reentrant_in_one_process_and_rejects_a_file(tmp_path):
    with RunLock(tmp_path), RunLock(tmp_path):
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(UsageError, match="existing file"):
        RunLock(f).acquire()

