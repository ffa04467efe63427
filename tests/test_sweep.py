"""policylab sweep on a local Ray instance (2 CPUs): trials are ordinary runs with the same numbers
as a plain run, failures are reported, a killed driver resumes, bad specs fail before Ray starts."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the sweep extra (ray[tune]) is not installed")

from policylab import sweep
from policylab.cli import main
from policylab.errors import ConfigError, RunLockedError

LEARN = {"name": "ql", "kind": "learn", "algo": "q-learning", "env": "line-world", "steps": 3000,
         "seeds": [0, 1], "metric": "charts/episodic_return", "space": {"alpha": {"grid": [0.1, 0.5]}}}
PPO = {"name": "ppo", "kind": "train", "algo": "ppo", "env": "CartPole-v1", "steps": 1024, "seeds": [0, 1],
       "metric": "charts/episodic_return", "space": {"learning_rate": {"grid": [3e-4, 1e-3]}}}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module: start-up is paid once."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def _table(out: Path) -> list[dict]:
    """summary.csv without the timing columns (they differ between runs)."""
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.pop("steps_per_second")
        r.pop("wall_seconds_per_trial")
    return rows


def test_learn_sweep_equals_plain_runs(local_ray, tmp_path):
    from policylab import tabular
    from policylab.mdp import catalog

    report = sweep.run(LEARN, out=tmp_path)
    trials = sorted(p.name for p in (tmp_path / "trials").iterdir())
    assert len(trials) == 4 and all(t.endswith(("-s0", "-s1")) for t in trials)
    for f in ("summary.md", "summary.csv", "curves.png", "best.yaml"):
        assert (tmp_path / f).is_file(), f
    for cid, params in sweep.load_spec(LEARN).configurations():
        for seed in (0, 1):
            got = np.load(tmp_path / "trials" / f"{cid}-s{seed}" / "result.npz")
            ref = tabular.q_learning(catalog.line_world(), 3000, params["alpha"], 0.1, seed=seed)
            np.testing.assert_array_equal(got["Q"], ref.Q)
            np.testing.assert_array_equal(got["episode_returns"], ref.episode_returns)
    assert [r["finished"] for r in report["rows"]] == [2, 2]


def test_ppo_sweep_equals_plain_train(local_ray, tmp_path):
    import torch

    from policylab.deep import load_agent

    report = sweep.run(PPO, out=tmp_path / "sw")
    assert report["best"] is not None and "IQM" in report["best"]
    cid, params = sweep.load_spec(PPO).configurations()[1]
    plain = tmp_path / "plain"
    assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "1024", "--seed", "1", "--out", str(plain),
                 "--set", f"learning_rate={params['learning_rate']}", "--no-progress"]) == 0
    trial = tmp_path / "sw" / "trials" / f"{cid}-s1"
    a, b = load_agent(trial), load_agent(plain)
    assert a.num_steps == b.num_steps == 1024
    for (k, x), (_, y) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert torch.equal(x, y), k
    rows = lambda d: [{k: v for k, v in r.items() if k != "charts/SPS"}
                      for r in csv.DictReader((d / "progress.csv").open())]
    assert rows(trial) == rows(plain)
    best = (tmp_path / "sw" / "best.yaml").read_text()
    assert "ppo:" in best and "learning_rate" in best
    assert main(["eval", str(trial), "--episodes", "2"]) == 0  # a trial is an ordinary run
    st = json.loads((trial / "trial.json").read_text())
    assert st["started_at"] <= st["ended_at"] and st["ended_at"] - st["started_at"] >= 0.9 * st["wall_seconds"]


def test_llm_sweep_equals_plain_llm_run(local_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative data paths in the spec mean the driver's folder
    assert main(["llm", "make-data", "--out", "data"]) == 0
    base = {"model": "tiny", "train_file": "data/sft.jsonl", "batch_size": 4, "max_prompt_length": 16,
            "max_length": 24, "save_steps": 2}
    spec = {"name": "sft", "kind": "llm", "algo": "sft", "config": base, "steps": 3, "seeds": [1],
            "metric": "loss", "mode": "min", "space": {"learning_rate": {"grid": [3e-3]}}}
    report = sweep.run(spec, out="sw")
    assert [r["finished"] for r in report["rows"]] == [1]
    cid, params = sweep.load_spec(spec).configurations()[0]
    assert main(["llm", "sft", "--model", "tiny", "--train_file", "data/sft.jsonl", "--batch_size", "4",
                 "--max_prompt_length", "16", "--max_length", "24", "--save_steps", "2", "--seed", "1",
                 "--max_steps", "3", "--learning_rate", str(params["learning_rate"]),
                 "--output_dir", "plain", "--progress", "false"]) == 0
    losses = lambda d: [json.loads(x)["loss"] for x in Path(d, "log.jsonl").read_text().splitlines()]
    assert losses(f"sw/trials/{cid}-s1") == losses("plain")
    assert report["best"]["config"] == cid and (Path("sw") / "best.yaml").is_file()
    with pytest.raises(ConfigError, match="set by the sweep"):
        sweep.load_spec({**spec, "config": {**base, "output_dir": "x"}})
    with pytest.raises(ConfigError, match="not logged by kind llm"):
        sweep.load_spec({**spec, "metric": "charts/episodic_return"})


def test_failing_trial_is_reported_and_the_others_finish(local_ray, tmp_path):
    spec = {**PPO, "env": "Pendulum-v1", "steps": 2048, "seeds": [0],
            "config": {"n_steps": 256, "n_envs": 2},
            "space": {"learning_rate": {"grid": [1e6, 3e-4]}}}  # 1e6 diverges
    report = sweep.run(spec, out=tmp_path)
    failed, ok = report["rows"]
    assert failed["failed"] == 1 and failed["finished"] == 0
    assert ok["failed"] == 0 and ok["finished"] == 1
    assert len(report["errors"]) == 1 and "Failed trials" in report["table"]
    status = json.loads(next((tmp_path / "trials").glob(f"{failed['config']}-s0/trial.json")).read_text())
    assert status["status"] == "failed" and status["error"]


def test_killed_driver_resumes_only_missing_trials(local_ray, tmp_path):
    import yaml

    # trials long enough (~0.1 s each) that the driver is killed between the first and the last
    spec = {**LEARN, "steps": 3_000_000, "seeds": [0, 1], "space": {"alpha": {"grid": [0.1, 0.3, 0.5]}}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-c", _FOREGROUND_CLI, "sweep", str(path), "--out", str(out), "--num-cpus", "1"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _kill_and_rerun(proc, path, out, spec, tmp_path)
    finally:  # Ray's helper processes of the killed driver outlive it: end its session
        _kill_session(proc.pid)


def _kill_session(sid: int) -> None:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # field 6 of /proc/PID/stat: the session id
                os.kill(int(stat.parent.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


def _kill_and_rerun(proc, path, out, spec, tmp_path):
    from policylab.io.lock import RunLock

    deadline = time.monotonic() + 240
    done = lambda: [p for p in (out / "trials").glob("*/trial.json")
                    if json.loads(p.read_text()).get("status") == "finished"] if (out / "trials").is_dir() else []
    while len(done()) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only, by its pid
    proc.wait(30)
    before = {p.parent.name: p.read_text() for p in done()}
    assert 1 <= len(before) < 6, "the driver must be killed mid-sweep"
    for run_dir in (out / "trials").iterdir():  # Ray stops the dead driver's workers: locks free up
        for _ in range(300):
            try:
                RunLock(run_dir).acquire().release()
                break
            except RunLockedError:
                time.sleep(0.1)
    assert main(["sweep", str(path), "--out", str(out)]) == 0  # the re-run (same spec, same folder)
    for name, text in before.items():  # finished trials were not repeated
        assert (out / "trials" / name / "trial.json").read_text() == text
    assert all(json.loads(p.read_text())["status"] == "finished" for p in (out / "trials").glob("*/trial.json"))
    sweep.run(spec, out=tmp_path / "whole")
    assert _table(out) == _table(tmp_path / "whole")


# the CLI as a terminal starts it in the foreground: Ctrl-C raises KeyboardInterrupt. A parent that
# ignores SIGINT (a shell's background job, e.g. ``.ci/run &``) hands the ignore on through exec and
# Python then installs no handler, so the sweep would run to its end.
_FOREGROUND_CLI = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "from policylab.cli import main; sys.exit(main())")


def test_ctrl_c_stops_at_once_and_keeps_finished_trials(local_ray, tmp_path):
    """Ctrl-C (SIGINT to the driver's process group, as a terminal sends it) ends the sweep within
    seconds with exit 130, the finished trials intact and usable; the same command then runs only
    the rest (the interrupted trial resumes from its checkpoint) and the table equals an
    uninterrupted sweep's."""
    import yaml

    from policylab.deep import load_agent

    spec = {**PPO, "steps": 30_000}  # checkpoints every 10 iterations: the interrupted trial resumes
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "sw"
    cmd = [sys.executable, "-c", _FOREGROUND_CLI, "sweep", str(path), "--out", str(out), "--num-cpus", "1"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        status = lambda: {p.parent.name: json.loads(p.read_text()).get("status")
                          for p in (out / "trials").glob("*/trial.json")} if (out / "trials").is_dir() else {}
        while "finished" not in status().values() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        _kill_session(proc.pid)
    assert proc.returncode == 130, stderr
    assert "interrupted with" in stderr and "run the same command again" in stderr
    assert "| config |" in stdout  # the table of what finished
    before = {name: (out / "trials" / name / "trial.json").read_text()
              for name, st in status().items() if st == "finished"}
    assert 1 <= len(before) < 4, "the sweep must be interrupted mid-way"
    for name in before:  # finished trials are usable as they are
        agent = load_agent(out / "trials" / name)
        assert agent.num_steps >= 30_000
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    for name, text in before.items():
        assert (out / "trials" / name / "trial.json").read_text() == text
    assert set(status().values()) == {"finished"}
    sweep.run(spec, out=tmp_path / "whole")
    assert _table(out) == _table(tmp_path / "whole")


def test_second_driver_on_the_same_folder_fails_at_once(tmp_path, capsys):
    out = tmp_path / "sw"
    spec = tmp_path / "s.yaml"
    spec.write_text(json.dumps(LEARN))
    holder = subprocess.Popen([sys.executable, "-c", (f"from policylab.io.lock import RunLock; import time; "
                               f"RunLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(60)")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["sweep", str(spec), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait(30)


@pytest.mark.parametrize(("change", "message"), [
    ({"space": {"no_such_field": {"grid": [1, 2]}}}, "unknown config field"),
    ({"space": {"learning_rate": {"grid": []}}}, "non-empty list"),
    ({"space": {"learning_rate": {"uniform": [1e-3, 1e-4]}}}, "empty"),
    ({"scheduler": "hyperband"}, "unknown scheduler"),
    ({"seeds": [0, 1.5]}, "seeds must be integers"),
    ({"seeds": "0,1"}, "seeds must be a non-empty list"),
    ({"metric": "losses/no_such_metric"}, "not logged by kind train"),
    ({"kind": "dance"}, "kind must be one of"),
    ({"space": {"learning_rate": {"grid": [-1.0]}}}, "learning_rate"),
])
def test_bad_spec_fails_before_ray_starts(change, message, tmp_path, capsys):
    import yaml

    spec = {**PPO, **change}
    with pytest.raises(ConfigError, match=message):
        sweep.load_spec(spec)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    was_running = ray.is_initialized()
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert ray.is_initialized() == was_running  # failed before any Ray start
    assert not (tmp_path / "o").exists()


def test_learn_metric_and_malformed_yaml(tmp_path, capsys):
    with pytest.raises(ConfigError, match="not logged by kind learn"):
        sweep.load_spec({**LEARN, "metric": "losses/policy_loss"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    assert main(["sweep", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("kind: !!python/object/apply:os.system ['echo pwned']\n")
    assert main(["sweep", str(tagged)]) == 2
