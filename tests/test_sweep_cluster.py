"""The README's cluster commands, for real: ``ray start --head`` and ``ray start --address=...``
(a second node, here on the same machine), then ``policylab sweep SPEC --address HOST:PORT`` and
``--address ray://HOST:PORT`` (Ray Client). Trials land in ``--out`` from both nodes and the
numbers equal a local sweep's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the sweep extra (ray[tune]) is not installed")

from test_sweep import LEARN, _kill_session, _table

from policylab import sweep


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Ray ≥ 2.59 turns token authentication on for `ray start --head` when a token exists; every node
#: and the driver must then agree (RAY_AUTH_MODE=token, the token in ~/.ray/auth_token), as the README says
AUTH = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def _ray_start(*args: str, tmp: Path, name: str) -> subprocess.Popen:
    log = open(tmp / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(["ray", "start", "--block", "--disable-usage-stats", "--num-cpus=1", *args],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **AUTH})


def _started(proc: subprocess.Popen, log: Path, deadline: float) -> None:
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"ray start did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _cpus(address: str) -> float:
    """The cluster's CPUs, asked from a separate driver (this process keeps no Ray connection)."""
    code = (f"import ray; ray.init(address={address!r}, log_to_driver=False); "
            "print(ray.cluster_resources().get('CPU', 0)); ray.shutdown()")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, **AUTH})
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0.0


def _nodes(address: str) -> list[str]:
    code = (f"import ray; ray.init(address={address!r}, log_to_driver=False); "
            "print(' '.join(n['NodeID'] for n in ray.nodes() if n['Alive'])); ray.shutdown()")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120,
                         env={**os.environ, **AUTH})
    return out.stdout.strip().splitlines()[-1].split()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node and a worker node (1 CPU each), started as the README says; ended by session."""
    tmp = tmp_path_factory.mktemp("cluster")
    port, client = _free_port(), _free_port()
    address = f"127.0.0.1:{port}"
    # its own temp dir: a plain ray.init() elsewhere on this machine (other tests) must not find it
    # (short: Ray's unix socket paths live under it, and tmp_path is too long for them)
    temp_dir = tempfile.mkdtemp(prefix="rc")
    temp = f"--temp-dir={temp_dir}"
    procs = [_ray_start("--head", f"--port={port}", f"--ray-client-server-port={client}", temp,
                        "--node-ip-address=127.0.0.1", "--include-dashboard=false", tmp=tmp, name="head")]
    try:
        subprocess.run(["ray", "get-auth-token", "--generate"] if not (Path.home() / ".ray" / "auth_token").is_file()
                       else ["true"], check=True, capture_output=True, env={**os.environ, **AUTH})
        deadline = time.monotonic() + 180
        _started(procs[0], tmp / "head.log", deadline)
        procs.append(_ray_start(f"--address={address}", "--node-ip-address=127.0.0.1", temp, tmp=tmp, name="worker"))
        _started(procs[1], tmp / "worker.log", deadline)
        while _cpus(address) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        if _cpus(address) < 2:
            pytest.fail("the two-node Ray cluster did not come up:\n" + (tmp / "head.log").read_text()[-2000:]
                        + (tmp / "worker.log").read_text()[-2000:])
        yield {"gcs": address, "client": f"ray://127.0.0.1:{client}", "nodes": _nodes(address)}
    finally:
        for p in procs[::-1]:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            _kill_session(p.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow  # starts two Ray nodes (~1 min idle); under heavy load their start-up can time out
@pytest.mark.parametrize("kind", ["gcs", "client"])
def test_sweep_runs_unchanged_on_a_cluster(cluster, kind, tmp_path):
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(LEARN))
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "policylab", "sweep", str(path), "--out", str(out), "--address", cluster[kind]]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **AUTH, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| config |" in proc.stdout
    status = [json.loads(p.read_text()) for p in (out / "trials").glob("*/trial.json")]
    assert len(status) == 4 and {s["status"] for s in status} == {"finished"}
    # each trial ran in the cluster (on one of its nodes; which lane takes which trial is up to the queue)
    assert {s["ray_node"] for s in status} <= set(cluster["nodes"]) and all(s["ray_node"] for s in status)
    sweep.run(LEARN, out=tmp_path / "local", num_cpus=1)
    assert _table(out) == _table(tmp_path / "local")
