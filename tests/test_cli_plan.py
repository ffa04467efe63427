"""`policylab plan`: table, JSON, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from policylab import planning
from policylab.cli import main
from policylab.mdp import catalog


def test_plan_line_world_table(capsys):
    assert main(["plan", "--mdp", "line-world", "--gamma", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "Q*(left)" in out and "Q*(right)" in out
    s1 = next(line for line in out.splitlines() if line.startswith("s1 "))
    assert s1.split() == ["s1", "0.8100", "0.7290", "0.8100", "right"]


@pytest.mark.parametrize("method", ["vi", "pi", "mpi"])
def test_plan_json_matches_library(tmp_path, method):
    path = tmp_path / "out.json"
    assert main(["plan", "--mdp", "frozen-lake", "--gamma", "0.95", "--method", method, "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    ref = planning.policy_iteration(catalog.get("frozen-lake", gamma=0.95))
    np.testing.assert_allclose(data["V"], ref.V, atol=1e-7)
    np.testing.assert_allclose(data["Q"], ref.Q, atol=1e-7)
    assert data["actions"] == ["left", "down", "right", "up"] and len(data["policy"]) == 16


@pytest.mark.parametrize("argv,needle", [
    (["plan", "--mdp", "nope"], "invalid choice: 'nope'"),
    (["plan", "--gamma", "1.5"], "--gamma: must be in [0, 1], got '1.5'"),
    (["plan", "--gamma", "abc"], "--gamma: must be a number in [0, 1], got 'abc'"),
    (["plan", "--tol", "-1"], "--tol: must be in (0, inf), got '-1'"),
    (["plan", "--method", "magic"], "invalid choice: 'magic'"),
    (["plan", "--mdp", "gridworld", "--gamma", "1"], "gamma = 1 needs terminal states"),
])
def test_plan_bad_input_one_line_exit_2(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "policylab", *argv], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
