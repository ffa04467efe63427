"""Command-line faults from the hostile pass (issue 11 items 5, 6, 11, 13): each reproduced, each now a
one-line error with exit code 2 naming the culprit; a property test over EVERY numeric option of EVERY
command (found from the argparse parsers, so new options are covered); and the import budget."""

import argparse
import json
import math
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policylab.cli import all_parsers, main


def _fails(capsys, argv, *needles):
    """``main(argv)`` exits 2 with one line on stderr, no traceback, containing every needle."""
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# ------------------------------------------------------------------ huge or odd numbers (item 5)
@pytest.mark.parametrize("argv, culprit", [
    (["learn", "q-learning", "--steps", "1e19"], "--steps"),
    (["learn", "q-learning", "--steps", "1e30"], "--steps"),
    (["train", "ppo", "--env", "CartPole-v1", "--out", "x", "--steps", "1e30"], "--steps"),
    (["plot", "run", "--reps", "1e9"], "--reps"),
    (["llm", "grpo", "--num_generations", "0"], "--num_generations"),
    (["llm", "eval", "--model", "tiny", "--data", "x.jsonl", "--max-new-tokens", "-1"], "--max-new-tokens"),
    (["llm", "make-data", "--test-fraction", "1.5"], "--test-fraction"),
    (["llm", "make-data", "--test-fraction", "nan"], "--test-fraction"),
    (["llm", "make-data", "--max-a", "-5"], "--max-a"),
    (["plan", "--gamma", "nan"], "--gamma"),
    (["learn", "q-learning", "--alpha", "nan"], "--alpha"),
])
def test_out_of_range_numbers_exit_2(capsys, argv, culprit):
    _fails(capsys, argv, culprit)


def test_make_data_refuses_an_empty_split(tmp_path, capsys):
    _fails(capsys, ["llm", "make-data", "--out", str(tmp_path / "d"), "--max-a", "0", "--max-b", "1",
                    "--test-fraction", "0.1"], "test_fraction", "empty test set")
    assert not (tmp_path / "d").exists()


def test_plan_max_rows_zero_prints_only_the_title(capsys):
    assert main(["plan", "--max-rows", "0"]) == 0
    out = capsys.readouterr().out
    assert "converged" in out and "more states" in out and "s1 " not in out


def test_yaml_adam_betas_scalar(tmp_path, capsys):
    cfg = tmp_path / "grpo.yaml"
    cfg.write_text("adam_betas: 0.9\n")
    _fails(capsys, ["llm", "grpo", "--config", str(cfg)], "adam_betas", "list of 2 values")


# ------------------------------------------------------------------ files and folders (items 6, 11)
def test_output_paths_that_cannot_be_written(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _fails(capsys, ["plan", "--json", str(tmp_path)], "--json", "is a folder")
    _fails(capsys, ["learn", "q-learning", "--trace", str(tmp_path / "t.csv"), "--trace", str(tmp_path) + "/"],
           "--trace")
    _fails(capsys, ["learn", "q-learning", "--trace", str(a_file / "t.csv")], "--trace")
    _fails(capsys, ["figures", "--out", str(a_file)], "--out", "existing file")
    _fails(capsys, ["llm", "make-data", "--out", str(a_file)], "--out", "existing file")
    _fails(capsys, ["plot", str(tmp_path), "--out", str(a_file / "x.png")], "--out")
    _fails(capsys, ["llm", "sft", "--output_dir", str(a_file), "--train_file", str(a_file)], "output_dir")
    assert a_file.read_text() == "x"


def test_read_only_output_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores the mode: use a folder nobody can create files in
            ro = Path("/proc/policylab-test")
        _fails(capsys, ["figures", "--out", str(ro / "f")], "--out", "cannot write")
        _fails(capsys, ["plan", "--json", str(ro / "p.json")], "--json")
        _fails(capsys, ["learn", "q-learning", "--trace", str(ro / "t.npy")], "--trace")
    finally:
        (tmp_path / "ro").chmod(0o700)


@pytest.mark.parametrize("content, needle", [
    (b"steps: [1\n", "malformed YAML"),
    (b"steps: !!python/object/apply:os.system ['echo owned']\n", "Python tags"),
    (bytes(range(256)) * 4, "binary"),
    (b"stepz: 10\n", "unknown config field 'stepz'"),
    (b"steps: 0\n", "steps=0 must be in [1, 1e12]"),
])
def test_bad_config_files_name_the_file_or_field(tmp_path, capsys, content, needle):
    cfg = tmp_path / "learn.yaml"
    cfg.write_bytes(content)
    err = _fails(capsys, ["learn", "q-learning", "--config", str(cfg), "--no-progress"], needle)
    assert str(cfg) in err or "steps" in err


def test_bad_train_preset_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "p.yaml"
    cfg.write_bytes(b"\x00\x01binary")
    _fails(capsys, ["train", "ppo", "--env", "CartPole-v1", "--steps", "64", "--out", str(tmp_path / "r"),
                    "--config", str(cfg)], str(cfg), "binary")
    _fails(capsys, ["train", "ppo", "--env", "CartPole-v1", "--steps", "64", "--out", str(tmp_path / "r"),
                    "--set", "n_envs=abc"], "n_envs", "integer")


# ------------------------------------------------------------------ smaller (item 13)
@pytest.mark.parametrize("command", [["make-data"], ["eval", "--model", "tiny", "--data", "x.jsonl"]])
def test_make_data_and_eval_reject_unknown_options(tmp_path, capsys, command):
    _fails(capsys, ["llm", *command, "--bogus", "1"], "unknown config field 'bogus'")


def test_make_data_takes_a_config_file(tmp_path, capsys):
    cfg = tmp_path / "d.yaml"
    cfg.write_text(f"out: {tmp_path / 'd'}\nmax_a: 9\n")
    assert main(["llm", "make-data", "--config", str(cfg), "--max-b", "1"]) == 0
    assert len((tmp_path / "d" / "grpo.jsonl").read_text().splitlines()) == 16  # 20 pairs, 4 held out


def test_dpo_resume_without_a_checkpoint_refuses(tmp_path, capsys):
    _fails(capsys, ["llm", "dpo", "--output_dir", str(tmp_path / "run"), "--resume"], "--resume", "no checkpoint")
    assert not (tmp_path / "run").exists()


def test_readme_says_what_constraints_txt_does():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "pins the CPU build" not in readme and "pins only the version" in readme


# ------------------------------------------------------------------ every numeric option
def _numeric_options():
    """(words, option, converter) for every option whose value is a number, in every (sub)command."""
    found = []
    for words, parser in all_parsers():
        for action in parser._actions:
            conv = parser._registry_get("type", action.type, action.type)
            rng = getattr(conv, "range", None)
            if action.option_strings and rng is not None:
                found.append((words, action.option_strings[0], conv))
    return found


NUMERIC = _numeric_options()
BAD = st.one_of(
    st.sampled_from(["0", "-1", "-0.5", "nan", "inf", "-inf", "1e19", "1e30", "1" + "0" * 40, "0.5", "abc",
                     "1,2", "0x10", "1e-400"]),
    st.integers(-10**30, -1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz!?", min_size=1, max_size=8),
)


def _is_bad(text: str, conv) -> bool:
    """True when the option's declared kind and range exclude ``text``."""
    hint = conv.spec.hint
    if text.strip().lower() in ("none", "null", "~", "") and type(None) in typing.get_args(hint):
        return False  # an Optional field: None is allowed
    if typing.get_origin(typing.get_args(hint)[0] if type(None) in typing.get_args(hint) else hint) in (list, tuple) \
            and "," in text:
        return False  # a list field: "1,2" is a list of two numbers
    try:
        x = float(text.replace("_", ""))
    except ValueError:
        return True
    if conv.kind is int and not (math.isfinite(x) and x == int(x)):
        return True
    return x not in conv.range


def test_every_command_has_numeric_options_with_stated_ranges():
    commands = {words[0] for words, _, _ in NUMERIC}
    assert {"plan", "learn", "train", "eval", "llm", "plot", "tour"} <= commands
    assert len(NUMERIC) > 60
    for words, parser in all_parsers():
        fmt = parser._get_formatter()
        for action in parser._actions:
            if action.option_strings and getattr(parser._registry_get("type", action.type, action.type),
                                                 "range", None) is not None:
                text = fmt._get_help_string(action)
                assert "range" in text or "finite" in text, (words, action.option_strings)


@pytest.mark.parametrize("words, option, conv", NUMERIC, ids=[" ".join(w) + " " + o for w, o, _ in NUMERIC])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=BAD)
def test_bad_numbers_exit_2_naming_the_option(capsys, words, option, conv, text):
    if not _is_bad(text, conv):
        return
    assert main([*words, f"{option}={text}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert option in err or option.lstrip("-").replace("-", "_") in err, err


def test_numeric_options_are_found_from_the_parsers():
    """A new `type=int` option anywhere is covered: the default range applies to it."""
    for _, parser in all_parsers():
        for action in parser._actions:
            if action.type in (int, float):
                conv = parser._registry_get("type", action.type, action.type)
                assert conv.range is not None
                with pytest.raises(argparse.ArgumentTypeError):
                    conv("nan")


# ------------------------------------------------------------------ import budget (issue 18 item 3)
_BUDGET = """
import sys, tempfile
from policylab.cli import main
from policylab.startup import skip_optimizer_dynamo
skip_optimizer_dynamo()  # as main() does when it runs as the policylab process
out = tempfile.mkdtemp()
assert main(["--help"]) == 0
heavy = [m for m in ("torch", "scipy", "numpy", "matplotlib", "transformers") if m in sys.modules]
assert not heavy, f"--help imported {heavy}"
assert main(["plan", "--mdp", "line-world"]) == 0
assert main(["learn", "q-learning", "--steps", "1000", "--no-progress", "--rows", "0"]) == 0
assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "64", "--out", out + "/r", "--no-progress",
             "--no-tensorboard", "--set", "n_envs=2", "--set", "n_steps=32", "--set", "batch_size=32",
             "--set", "n_epochs=1"]) == 0
heavy = [m for m in ("transformers", "matplotlib", "trl", "torch._dynamo") if m in sys.modules]
assert not heavy, f"plan/learn/train imported {heavy}"
print("ok")
"""


def test_import_budget_of_plan_learn_train_and_help():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", _BUDGET], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


# ------------------------------------------------------------------ --help lists every config field
def test_help_of_every_config_command_lists_every_field(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100000")  # no wrapping (argparse breaks lines at hyphens)
    from policylab.cli.learn import LearnConfig
    from policylab.cli.llm import EvalConfig, MakeDataConfig, _config_class
    from policylab.config import field_specs
    from policylab.deep import A2C, PPO, REINFORCE, ActorCritic

    parsers = dict(all_parsers())
    expected = {("learn",): LearnConfig, ("llm", "make-data"): MakeDataConfig, ("llm", "eval"): EvalConfig}
    expected |= {("llm", c): _config_class(c) for c in ("sft", "dpo", "grpo")}
    for words, cls in expected.items():
        text = " ".join(parsers[words].format_help().split())
        for spec in field_specs(cls):
            assert f"--{spec.name.replace('_', '-')}" in text, (words, spec.name)
            assert " ".join(spec.help.split()) in text, (words, spec.name)
    text = parsers[("train",)].format_help()  # train: --set NAME=VALUE, fields listed per algorithm
    for agent in (REINFORCE, ActorCritic, A2C, PPO):
        assert f"{agent.config_class.__name__} fields" in text
        for spec in field_specs(agent.config_class):
            assert f"  {spec.name} — {spec.help}" in text, (agent, spec.name)


def test_process_exit_flushes_output_and_keeps_the_code(tmp_path):
    """As a process, `policylab` ends with os._exit after atexit + flush: nothing printed is lost."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = [sys.executable, "-m", "policylab", "plan", "--mdp", "taxi", "--gamma", "0.9", "--json"]
    proc = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0 and len(json.loads(proc.stdout)["V"]) == 500
    proc = subprocess.run(run[:-1] + ["--max-rows", "-1"], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert proc.returncode == 2 and "--max-rows" in proc.stderr and proc.stdout == ""
    head = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    head.stdout.readline()
    head.stdout.close()  # like `| head -1`: no BrokenPipeError traceback
    assert head.wait(timeout=120) in (0, 141) and "Traceback" not in head.stderr.read().decode()


_NO_DYNAMO = """
import sys
import torch
BEFORE
from policylab.startup import skip_optimizer_dynamo
skip_optimizer_dynamo()
p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
opt = torch.optim.Adam([p], lr=0.1)  # add_param_group: the first call that imports torch._dynamo
opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 0.5})
(p ** 2).sum().backward()
opt.zero_grad()
state = opt.state_dict()
opt.load_state_dict(state)
assert "torch._dynamo" not in sys.modules, "torch._dynamo was imported"
assert p.grad is None and [g["lr"] for g in opt.param_groups] == [0.1, 0.5], opt.param_groups
assert [g["params"] for g in state["param_groups"]] == [[0], [1]], state["param_groups"]
print("ok")
"""


@pytest.mark.parametrize("before", ["", "import torch.optim.optimizer"])
def test_skip_optimizer_dynamo_keeps_the_optimizer_and_skips_the_import(before):
    """The start-up shortcut of the CLI and of a sweep's Ray workers (policylab.startup), installed
    before torch's optimizer module loads or after: the Optimizer methods torch wraps in
    _disable_dynamo still work, and torch._dynamo stays unloaded (step() itself may still load it)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", _NO_DYNAMO.replace("BEFORE", before)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
