"""Issue 11, deep-RL side: each fault found by the hostile pass, reproduced, now one clear error.

One test per fault (numbers refer to the issue's list): divergence (1), two writers (2),
checkpoint.json trusted too much (4), numeric ranges of train/eval (5), bad --out and eval seed (6),
logs after interruption and Ctrl-C (7), overrides on resume (8), checkpoint fields named (11),
leftovers of killed or failed saves (12), the README's resume example (13).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab.cli import main
from policylab.deep import A2C, PPO, REINFORCE, ActorCritic, load_agent
from policylab.errors import CheckpointError, DivergenceError, RunLockedError
from policylab.io import checkpoint as ckpt
from policylab.io.checkpoint import load_checkpoint
from policylab.io.lock import RunLock

ROOT = Path(__file__).resolve().parents[1]
SMALL_PPO = {"n_envs": 2, "n_steps": 16, "batch_size": 32, "n_epochs": 1, "hidden_sizes": (8,)}
QUIET = ["--no-progress", "--no-tensorboard"]
CP_PPO = ["--set", "n_envs=1", "--set", "n_steps=16", "--set", "batch_size=16", "--set", "n_epochs=1",
          "--set", "hidden_sizes=[8]"]


def _one_line_error(capsys, *needles) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _spawn(*args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "policylab", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(cond, proc, timeout=120.0):
    end = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _rows(run) -> list[dict]:
    with open(Path(run) / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


def _write_v1(path: Path, tensors: dict, meta: dict) -> None:
    """A checkpoint as the v1 writer made it (no meta hash, nothing refused): crafted files."""
    from safetensors.torch import save

    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("weights-*"):
        old.unlink()
    data = save({k: v.contiguous() for k, v in tensors.items()})
    digest = hashlib.sha256(data).hexdigest()
    (path / f"weights-{digest[:16]}.safetensors").write_bytes(data)
    meta = {k: v for k, v in meta.items() if k not in ckpt.RESERVED}
    doc = {"format": "policylab-checkpoint-v1", "weights": f"weights-{digest[:16]}.safetensors",
           "sha256": digest, **meta}
    (path / "checkpoint.json").write_text(json.dumps(doc))


# ---------------------------------------------------------------- 1. divergence

def test_divergence_cli_stops_naming_step_and_quantity_and_keeps_last_good_checkpoint(tmp_path, capsys):
    """The reported case: PPO on Pendulum with learning_rate=1e6 trained on NaN, then left an
    orphan weights file (or NaN weights) and `eval` printed `mean nan ± nan` with exit 0."""
    out = tmp_path / "run"
    args = ["train", "ppo", "--env", "Pendulum-v1", "--steps", "2048", "--out", str(out), "--set", "learning_rate=1e6",
            "--set", "n_envs=1", "--set", "n_steps=64", "--set", "batch_size=64", "--set", "n_epochs=2",
            "--checkpoint-every", "1", *QUIET]
    assert main(args) == 2
    err = _one_line_error(capsys, "diverged at step")
    step = int(re.search(r"step ([\d,]+)", err).group(1).replace(",", ""))
    assert re.search(r"(reward|losses/\w+|gradient|parameter)", err)
    assert 64 < step < 2048
    # the last good checkpoint (one iteration before) is intact, finite, and the only weights file
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["num_steps"] == step - 64
    assert [p.name for p in out.glob("weights-*")] == [meta["weights"]]
    assert all(int(r["global_step"]) < step for r in _rows(out))
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    capsys.readouterr()
    # a checkpoint with NaN weights (as the old writer saved them) is an error for eval, not `nan ± nan`
    tensors, meta = load_checkpoint(out)
    tensors["net/actor.0.weight"][0, 0] = float("nan")
    _write_v1(out, tensors, meta)
    assert main(["eval", str(out)]) == 2
    _one_line_error(capsys, "net/actor.0.weight", "NaN")


@pytest.mark.parametrize("cls, env, kw", [
    (PPO, "Pendulum-v1", SMALL_PPO),
    (A2C, "Pendulum-v1", {"n_envs": 2, "n_steps": 8, "hidden_sizes": (8,)}),
    (REINFORCE, "CartPole-v1", {"hidden_sizes": (8,)}),
    (ActorCritic, "CartPole-v1", {"steps_per_iteration": 16, "hidden_sizes": (8,)}),
])
def test_divergence_every_trainer_and_save_refuses_nan(tmp_path, cls, env, kw):
    agent = cls(env, seed=0, **kw).learn(32, checkpoint_dir=tmp_path)
    good = (tmp_path / "checkpoint.json").read_bytes()
    with torch.no_grad():  # a parameter blows up (as a huge step makes it): caught before logging/saving
        next(agent.net.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(DivergenceError, match=r"diverged at step [\d,]+ .*: (reward|losses/|gradient|parameter)"):
        agent.learn(agent.num_steps + 64, log_dir=tmp_path / "log", checkpoint_dir=tmp_path, checkpoint_every=1)
    assert (tmp_path / "checkpoint.json").read_bytes() == good
    with pytest.raises(DivergenceError, match="NaN/inf"):
        agent.save(tmp_path)  # the direct API refuses too, before writing anything
    assert (tmp_path / "checkpoint.json").read_bytes() == good and len(list(tmp_path.glob("weights-*"))) == 1


def test_divergence_check_exact_through_its_fast_path():
    """check_finite first tests one sum of sums; that shortcut must neither miss a NaN in a flat
    buffer's view nor call finite-but-huge parameters (whose float32 sum overflows) diverged."""
    from policylab.deep.guards import check_finite
    from policylab.deep.sac import SAC

    agent = SAC("Pendulum-v1", seed=0, hidden_sizes=(8,), learning_starts=4, batch_size=4).learn(8)
    check_finite(agent, {})
    name, p = list(agent.net.named_parameters())[3]
    with torch.no_grad():
        p.view(-1)[0] = 3e38  # finite; the buffer's sum overflows to inf
        p.view(-1)[1] = 3e38
    check_finite(agent, {"losses/value_loss": 1.0})
    with torch.no_grad():
        p.view(-1)[1] = float("nan")
    with pytest.raises(DivergenceError, match=f"parameter {name} is NaN/inf"):
        check_finite(agent, {})
    with pytest.raises(DivergenceError, match="losses/policy_loss is NaN/inf"):
        check_finite(agent, {"losses/policy_loss": float("inf")})


def test_divergence_nan_reward_is_named(tmp_path):
    import gymnasium as gym

    class NaNReward(gym.Wrapper):
        def step(self, action):
            obs, _, term, trunc, info = self.env.step(action)
            return obs, float("nan"), term, trunc, info

    env = gym.vector.SyncVectorEnv([lambda: NaNReward(gym.make("CartPole-v1"))],
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    with pytest.raises(DivergenceError, match="step 16 .*reward"):
        PPO(env, seed=0, **{**SMALL_PPO, "n_envs": 1, "batch_size": 16}).learn(64, checkpoint_dir=tmp_path)
    assert not (tmp_path / "checkpoint.json").exists() and not list(tmp_path.glob("weights-*"))


# ---------------------------------------------------------------- 2. two writers

def test_second_writer_on_one_out_fails_at_once(tmp_path, capsys):
    out = tmp_path / "run"
    first = _spawn("train", "ppo", "--env", "CartPole-v1", "--steps", "1e6", "--out", str(out), *CP_PPO, *QUIET)
    try:
        _wait_for(lambda: (out / "progress.csv").is_file(), first)
        started = time.monotonic()
        assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "64", "--out", str(out), *QUIET]) == 2
        assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "1e6", "--out", str(out), "--resume",
                     *QUIET]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2 and all(f"pid {first.pid}" in line for line in err), err
        with pytest.raises(RunLockedError):  # the library's learn locks its directories too
            PPO("CartPole-v1", **SMALL_PPO).learn(32, log_dir=out)
        assert time.monotonic() - started < 60  # at once: never waits for the first run
        assert first.poll() is None
    finally:
        first.kill()  # kill -9: the lock is released by the kernel; a checkpoint, if any, is complete
        first.wait(30)
    if (out / "checkpoint.json").exists():
        assert load_agent(out).num_steps > 0
    with RunLock(out):
        pass


# ---------------------------------------------------------------- 4. checkpoint.json trusted too much

def test_checkpoint_json_has_a_fixed_schema_and_a_hash(tmp_path):
    agent = PPO("CartPole-v1", seed=0, **SMALL_PPO).learn(32)
    agent.save(tmp_path / "ok")
    tensors, meta = load_checkpoint(tmp_path / "ok")
    assert meta["format"] == "policylab-checkpoint-v2" and len(meta["meta_sha256"]) == 64
    # v2: an edited byte of the JSON (still valid JSON) is detected by the hash
    text = (tmp_path / "ok" / "checkpoint.json").read_text()
    (tmp_path / "ok" / "checkpoint.json").write_text(text.replace('"num_steps": 32', '"num_steps": 33'))
    with pytest.raises(CheckpointError, match="meta_sha256"):
        PPO.load(tmp_path / "ok")
    # v1 files (no meta hash) still load and resume exactly as before
    _write_v1(tmp_path / "v1", tensors, meta)
    again = PPO.load(tmp_path / "v1").learn(64)
    assert torch.equal(again.flat_params, PPO.load(tmp_path / "v1").learn(64).flat_params)
    assert again.num_steps == 64

    called = []
    np_info = np.info
    np.info = lambda *a, **k: called.append(a)  # the crafted file used to make `eval` call np.info
    try:
        env_state = meta["env_state"]
        cls = env_state[-1]["__class__"]
        crafted = [
            (dict(env_state[-1], state={"scalar": "/etc/passwd", "np": "info"}), "state"),
            (dict(env_state[-1], x_threshold={"scalar": 1, "np": "fromfile"}), "fromfile"),
            (dict(env_state[-1], __init__={"scalar": 1, "np": None}), "does not have"),
            (dict(env_state[-1], state={"array": [["x"]], "dtype": "|O", "shape": [1]}), "state"),
            (dict(env_state[-1], np_random={"array": [1.0], "dtype": "<f8", "shape": [1]}), "np_random"),
        ]
        for entry, match in crafted:
            assert entry["__class__"] == cls
            _write_v1(tmp_path / "bad", tensors, {**meta, "env_state": [*env_state[:-1], entry]})
            with pytest.raises(CheckpointError, match=match):
                PPO.load(tmp_path / "bad")
        for field, value in [("evil", 1), ("np_rng", {"bit_generator": "MT19937"}),
                             ("optimizer_param_groups", {"main": [{"params": [0], "lr": "fast"}]})]:
            _write_v1(tmp_path / "bad", tensors, {**meta, field: value})
            with pytest.raises(CheckpointError, match=field):
                PPO.load(tmp_path / "bad")
    finally:
        np.info = np_info
    assert called == []


# ---------------------------------------------------------------- 5. ranges of numeric options

def test_train_and_eval_numbers_have_stated_ranges(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "1e30", "--out", out, *QUIET]) == 2
    _one_line_error(capsys, "--steps")
    assert not Path(out).exists()  # checked before any work
    with pytest.raises(ValueError, match="total_steps"):
        PPO("CartPole-v1", **SMALL_PPO).learn(1e30)
    PPO("CartPole-v1", **SMALL_PPO).save(out)
    assert main(["eval", out, "--episodes", str(10**8)]) == 2
    _one_line_error(capsys, "--episodes", "10000")
    for cmd, flag in [("train", "--steps"), ("train", "--seed"), ("train", "--checkpoint-every"),
                      ("eval", "--episodes"), ("eval", "--seed")]:
        assert main([cmd, "--help"]) == 0
        helptext = " ".join(capsys.readouterr().out.split())
        assert re.search(re.escape(flag) + r"[^\[]*\[[^\]]*\d", helptext), (cmd, flag)


_TOO_BIG = {"--steps": 10**12 + 1, "--seed": 2**31, "--checkpoint-every": 2**31, "--episodes": 10_001,
            "eval --seed": 2**31}


@settings(deadline=None, max_examples=60)
@given(st.data())
def test_bad_numbers_exit_2_naming_the_option(data):
    import contextlib
    import io
    import tempfile

    option = data.draw(st.sampled_from(sorted(_TOO_BIG)), label="option")
    value = data.draw(st.one_of(st.integers(max_value=0 if option in ("--steps", "--episodes") else -1),
                                st.integers(min_value=_TOO_BIG[option], max_value=10**40),
                                st.sampled_from(["nan", "inf", "-inf", "1e30", "1.5", "abc", ""])), label="value")
    flag = option.split()[-1]
    with tempfile.TemporaryDirectory() as tmp:
        if option in ("--episodes", "eval --seed"):
            argv = ["eval", tmp, flag, str(value)]
        else:
            steps = str(value) if flag == "--steps" else "64"
            argv = ["train", "ppo", "--env", "CartPole-v1", "--out", f"{tmp}/r", *QUIET, "--steps", steps]
            argv += [] if flag == "--steps" else [flag, str(value)]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse rejects non-integers while parsing
                code = exc.code
        assert code == 2 and flag in err.getvalue() and "Traceback" not in err.getvalue(), (argv, err.getvalue())
        assert not Path(f"{tmp}/r").exists()


# ---------------------------------------------------------------- 6. bad --out, eval --seed -1

def test_out_that_is_a_file_or_unwritable_and_negative_eval_seed(tmp_path, capsys):
    base = ["train", "ppo", "--env", "CartPole-v1", "--steps", "64", *QUIET, "--out"]
    (tmp_path / "file").write_text("x")
    assert main([*base, str(tmp_path / "file")]) == 2
    _one_line_error(capsys, str(tmp_path / "file"))
    if Path("/sys").is_dir():  # read-only even for root
        assert main([*base, "/sys/policylab-run"]) == 2
        _one_line_error(capsys, "/sys/policylab-run")
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir(mode=0o555)
        assert main([*base, str(tmp_path / "ro" / "run")]) == 2
        _one_line_error(capsys, "ro")
    PPO("CartPole-v1", **SMALL_PPO).save(tmp_path / "c")
    assert main(["eval", str(tmp_path / "c"), "--seed", "-1"]) == 2
    _one_line_error(capsys, "--seed")


# ---------------------------------------------------------------- 7. logs after interruption, Ctrl-C

def test_resume_after_kill_truncates_logs_and_new_run_refuses_foreign_log(tmp_path, capsys):
    def run(directory, stop_at=None):
        agent = PPO("CartPole-v1", seed=3, **SMALL_PPO)

        def crash(a, metrics):  # a kill in iteration 4 (before its row): rows 1-3 written, checkpoint at 2
            if a.iteration == stop_at:
                raise SystemExit("killed")

        with pytest.raises(SystemExit) if stop_at else _null():
            agent.learn(160, log_dir=directory, tensorboard=False, checkpoint_dir=directory, checkpoint_every=2,
                        callback=crash)
        return agent

    run(tmp_path / "a", stop_at=4)
    assert [r["global_step"] for r in _rows(tmp_path / "a")] == ["32", "64", "96"]
    PPO.load(tmp_path / "a").learn(160, log_dir=tmp_path / "a", tensorboard=False)
    run(tmp_path / "b")

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "charts/SPS"} for r in rows]

    assert [r["global_step"] for r in _rows(tmp_path / "a")] == ["32", "64", "96", "128", "160"]
    assert strip(_rows(tmp_path / "a")) == strip(_rows(tmp_path / "b"))  # same rows as without the kill
    # a new run in a folder holding another run's log is refused, naming the file; the log is untouched
    (tmp_path / "b" / "checkpoint.json").unlink()
    before = (tmp_path / "b" / "progress.csv").read_bytes()
    assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "64", "--out", str(tmp_path / "b"), *QUIET]) == 2
    _one_line_error(capsys, "progress.csv")
    assert (tmp_path / "b" / "progress.csv").read_bytes() == before


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_ctrl_c_saves_a_checkpoint_then_exits_130(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "ppo", "--env", "CartPole-v1", "--steps", "20000", "--seed", "2", "--out", str(out),
            "--checkpoint-every", "100000", *CP_PPO, *QUIET]
    proc = _spawn(*args)
    try:
        _wait_for(lambda: (out / "progress.csv").is_file() and len(_rows(out)) >= 3, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    saved = load_agent(out).num_steps
    assert saved == int(_rows(out)[-1]["global_step"]) and 16 * 3 <= saved < 20000
    assert main([*args, "--resume"]) == 0  # continues to the end, each step logged once
    steps = [int(r["global_step"]) for r in _rows(out)]
    assert steps == list(range(16, 20001, 16))
    capsys.readouterr()
    # in-process: the first Ctrl-C is held for the end of the iteration, a second one stops at once
    from policylab.io.interrupt import deferred_interrupt

    with deferred_interrupt() as pending:
        os.kill(os.getpid(), signal.SIGINT)
        assert pending == [True]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)


# ---------------------------------------------------------------- 8. overrides on resume

def test_resume_validates_overrides_and_refuses_changes(tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["train", "ppo", "--env", "CartPole-v1", "--steps", "32", "--out", out, *CP_PPO, *QUIET]
    assert main(base) == 0
    resume = [*base[:5], "64", *base[6:], "--resume"]
    assert main([*resume, "--set", "gamma=5"]) == 2
    _one_line_error(capsys, "gamma")
    assert main([*resume, "--set", "gamma=0.5"]) == 2
    _one_line_error(capsys, "gamma=0.98", "not 0.5")
    assert load_agent(out).num_steps == 32  # nothing trained
    assert main(resume) == 0  # the same --set values (and none at all) are fine
    assert load_agent(out).num_steps == 64


# ---------------------------------------------------------------- 11. fields named

def test_bad_checkpoint_fields_and_seed_are_named(tmp_path, capsys):
    PPO("CartPole-v1", **SMALL_PPO).save(tmp_path / "c")
    tensors, meta = load_checkpoint(tmp_path / "c")
    for bad, match in [({**meta, "num_steps": "abc"}, "num_steps"),
                       ({k: v for k, v in meta.items() if k != "seed"}, "'seed' is missing"),
                       ({**meta, "iteration": -1}, "iteration"),
                       ({**meta, "config": {**meta["config"], "gamma": "x"}}, "gamma")]:
        _write_v1(tmp_path / "c", tensors, bad)
        with pytest.raises(CheckpointError, match=match):
            load_agent(tmp_path / "c")
        assert main(["eval", str(tmp_path / "c")]) == 2
        _one_line_error(capsys, "checkpoint.json", match.strip("'").split("'")[0])
    assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "64", "--seed", "-1",
                 "--out", str(tmp_path / "r"), *QUIET]) == 2
    _one_line_error(capsys, "--seed")
    with pytest.raises(ValueError, match="seed"):
        PPO("CartPole-v1", seed=-1)


# ---------------------------------------------------------------- 12. leftovers

def test_killed_and_failed_saves_leave_nothing_behind(tmp_path, monkeypatch):
    agent = PPO("CartPole-v1", **SMALL_PPO)
    agent.save(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".checkpoint.json.{dead.pid}-abc123.tmp"
        busy = tmp_path / f".checkpoint.json.{alive.pid}-xyz789.tmp"
        stale.write_text("half")
        busy.write_text("half")
        load_agent(tmp_path)
        assert not stale.exists() and busy.exists()  # a live writer's temp file is not touched
    finally:
        alive.kill()
        alive.wait()
    load_agent(tmp_path)
    assert not busy.exists()

    # a save whose JSON write fails removes its new weights file; the old checkpoint still loads
    good = sorted(p.name for p in tmp_path.iterdir())
    agent.learn(32)
    real = ckpt.atomic_write_bytes

    def failing(path, data):
        if Path(path).name == "checkpoint.json":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", failing)
    with pytest.raises(OSError, match="No space"):
        agent.save(tmp_path)
    monkeypatch.setattr(ckpt, "atomic_write_bytes", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == good
    assert load_agent(tmp_path).num_steps == 0

    # the directory is fsynced after each rename (so the rename survives a power cut)
    events = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", Path(b).name)), real_replace(a, b)))
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}")
                                                                and Path(os.readlink(f"/proc/self/fd/{fd}")).is_dir())),
                                                 real_fsync(fd)))
    agent.save(tmp_path)
    replaced = [i for i, e in enumerate(events) if e[0] == "replace"]
    assert [events[i][1] for i in replaced][-1] == "checkpoint.json"
    assert all(events[i + 1] == ("fsync", True) for i in replaced)


# ---------------------------------------------------------------- 13. README resume example

def test_readme_resume_example_keeps_steps():
    lines = [ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("policylab train")]
    resumes = [ln for ln in lines if re.search(r"--resume($|\s)", ln)]  # examples, not the synopsis
    assert resumes
    for line in resumes:
        out = re.search(r"--out (\S+)", line).group(1)
        first = next(ln for ln in lines if f"--out {out}" in ln and "--resume" not in ln)
        assert re.findall(r"--steps (\S+)", line) == re.findall(r"--steps (\S+)", first)
