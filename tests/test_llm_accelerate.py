"""Issue 13 item 1: the LLM trainers on accelerate — several processes, gradient accumulation, bf16,
gradient checkpointing, checkpoints across process counts, main-process-only writes, bad settings.

Two-process runs are ``torchrun --nproc_per_node 2`` subprocesses (gloo on CPU) of
``tests/llm_dist_worker.py``; the one-process reference runs the same worker function in this process.
Parameters are compared per tensor as ‖a − b‖ / ‖b‖ (AdamW's first steps turn rounding-level gradient
differences of near-zero entries into visible single-entry differences, so a max-entry criterion would
test rounding, not the algorithm); gradients as max |Δ| / max |g| per tensor.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import llm_dist_worker as worker
import pytest
import torch
from safetensors.torch import load_file

from policylab.errors import ConfigError
from policylab.llm import DPOConfig, GRPOConfig, SFTConfig

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(worker.__file__)
ALGOS = worker.ALGOS


def torchrun(out, *flags, timeout=240):
    """``torchrun --nproc_per_node 2 llm_dist_worker.py OUT flags``; fails the test with its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{WORKER.parent}",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), str(out), *flags]
    code, out = run_process_group(cmd, env, timeout, cwd=ROOT)
    assert code == 0, out[-6000:]


def run_process_group(cmd, env, timeout, cwd=None) -> tuple[int, str]:
    """Run ``cmd`` in its own session; on timeout kill the whole group (the launcher's workers too)."""
    import signal

    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, out


def weights(run_dir, step=3) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run_dir) / f"checkpoint-{step}" / "model.safetensors"))


def assert_same_weights(a: dict, b: dict, rtol=1e-5) -> None:
    assert a.keys() == b.keys() and a
    for k, ref in b.items():
        err = ((a[k] - ref).norm() / ref.norm().clamp(min=1e-12)).item()
        assert err <= rtol, f"{k}: relative difference {err:.3g} > {rtol}"


def log_rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(one-process dir, two-process dir): each algorithm 3 steps (checkpoints 2 and 3), batch 8."""
    base = tmp_path_factory.mktemp("dist")
    for algo in ALGOS:
        worker.run(algo, base / "one" / algo)
    torchrun(base / "two")
    return base / "one", base / "two"


# ------------------------------------------------------------------- 2 processes = 1 process


@pytest.mark.parametrize("algo", ALGOS)
def test_two_processes_equal_one_process_with_the_same_global_batch(runs, algo):
    one, two = runs
    assert_same_weights(weights(two / algo), weights(one / algo))
    moved = max(((a - b).norm() / b.norm()).item()
                for a, b in zip(weights(one / algo).values(), weights(one / algo, 2).values()))
    assert moved > 1e-3  # the last step changes the weights far beyond the tolerance
    for r1, r2 in zip(log_rows(one / algo), log_rows(two / algo)):  # metrics reduced over both processes
        assert r1.keys() == r2.keys()
        for k in r1:
            assert r2[k] == pytest.approx(r1[k], rel=1e-4, abs=1e-5), k
    if algo == "grpo":  # the groups were scored on two processes, the rewards logged over all 8
        assert log_rows(two / algo)[0]["rewards/std"] > 0


@pytest.mark.parametrize("algo", ALGOS)
def test_only_the_main_process_writes_the_run_folder(runs, algo):
    _, two = runs
    assert sorted(p.name for p in (two / algo).iterdir()) == ["checkpoint-2", "checkpoint-3", "log.jsonl"]
    assert [r["step"] for r in log_rows(two / algo)] == [1, 2, 3]  # one row per step, not one per process


# ------------------------------------------------------------------- checkpoints across process counts


@pytest.mark.parametrize("algo", ["sft", "grpo"])
def test_checkpoint_of_two_processes_resumes_in_one(runs, tmp_path, algo):
    one, two = runs
    run = tmp_path / algo
    shutil.copytree(two / algo, run)
    shutil.rmtree(run / "checkpoint-3")
    trainer = worker.run(algo, run, resume=True)
    assert trainer.step == 3 and [r["step"] for r in log_rows(run)] == [1, 2, 3]
    assert_same_weights(weights(run), weights(one / algo))


def test_checkpoint_of_one_process_resumes_in_two(runs, tmp_path):
    one, _ = runs
    for algo in ("sft", "grpo"):
        shutil.copytree(one / algo, tmp_path / algo)
        shutil.rmtree(tmp_path / algo / "checkpoint-3")
    torchrun(tmp_path, "--resume", "algos=sft,grpo")
    for algo in ("sft", "grpo"):
        assert [r["step"] for r in log_rows(tmp_path / algo)] == [1, 2, 3]
        assert_same_weights(weights(tmp_path / algo), weights(one / algo))


# ------------------------------------------------------------------- accumulation, precision, checkpointing


def gradients_of_first_step(algo, out, **overrides) -> tuple[dict, dict]:
    """(gradients at the first optimizer step, that step's logged stats)."""
    grads = {}
    with worker.fixed_sampler():
        trainer = worker.make_trainer(algo, out, max_steps=1, **overrides)
        step = trainer.optimizer.step

        def capture(*args, **kwargs):
            grads.update({n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()
                          if p.grad is not None})
            return step(*args, **kwargs)

        trainer.optimizer.step = capture
        history = trainer.train()
    return grads, history[0]


def assert_same_gradients(a: dict, b: dict, rtol: float) -> None:
    assert a.keys() == b.keys() and a
    for k, ref in b.items():
        err = (a[k] - ref).abs().max().item()
        assert err <= rtol * max(ref.abs().max().item(), 1e-12), f"gradient of {k}: max diff {err:.3g}"


@pytest.mark.parametrize("algo", ALGOS)
def test_gradient_accumulation_4x2_equals_batch_8x1(tmp_path, algo):
    """fp32 to 1e-6. The reward model runs in float64 (to 1e-12): its Bradley–Terry gradient is the
    difference of two near-equal scores' gradients, so fp32 rounding alone reaches 6e-6 there."""
    batch = {"batch_size": 16} if algo == "grpo" else {}  # GRPO: 4 micro-batches of one group (G = 4)
    dtype, rtol = (torch.float64, 1e-12) if algo == "reward" else (torch.float32, 1e-6)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the tiny model is built in the default dtype
    try:
        big, s_big = gradients_of_first_step(algo, tmp_path / "big", **batch)
        acc, s_acc = gradients_of_first_step(algo, tmp_path / "acc", gradient_accumulation_steps=4, **batch)
    finally:
        torch.set_default_dtype(default)
    assert next(iter(big.values())).dtype == dtype
    assert_same_gradients(acc, big, rtol)
    assert s_acc["loss"] == pytest.approx(s_big["loss"], rel=1e-6)
    if "num_tokens" in s_big:
        assert s_acc["num_tokens"] == s_big["num_tokens"]


# DPO without checkpointing runs each prompt once for both completions, with it the prompt twice: LoRA
# dropout would draw other masks on the two paths (both unbiased), so that case runs without dropout.
@pytest.mark.parametrize("algo,extra", [("sft", {}), ("grpo", {}), ("dpo", {"use_peft": True, "lora_dropout": 0.0})])
def test_gradient_checkpointing_gives_the_same_gradients(tmp_path, algo, extra):
    plain, _ = gradients_of_first_step(algo, tmp_path / "plain", **extra)
    ckpt, _ = gradients_of_first_step(algo, tmp_path / "ckpt", gradient_checkpointing=True, **extra)
    assert_same_gradients(ckpt, plain, 1e-6)


#: bf16 keeps 8 bits of mantissa (relative rounding 2⁻⁸ ≈ 0.4 %): losses of these tiny runs stay within 2 %.
BF16_RTOL = 0.02


@pytest.mark.parametrize("algo", ["sft", "dpo"])
def test_bf16_on_cpu_runs_and_its_loss_stays_near_fp32(tmp_path, algo):
    fp32 = worker.run(algo, tmp_path / "fp32").history
    bf16 = worker.run(algo, tmp_path / "bf16", mixed_precision="bf16").history
    assert len(bf16) == 3
    for a, b in zip(bf16, fp32):
        assert a["loss"] == pytest.approx(b["loss"], rel=BF16_RTOL)
    assert bf16[0]["loss"] != fp32[0]["loss"]  # autocast really ran in bf16


def test_fp16_with_gradient_scaler_runs_on_cpu(tmp_path):
    fp32 = worker.run("sft", tmp_path / "fp32").history
    fp16 = worker.run("sft", tmp_path / "fp16", mixed_precision="fp16").history
    assert fp16[0]["loss"] == pytest.approx(fp32[0]["loss"], rel=BF16_RTOL)


# ------------------------------------------------------------------- tracking


def test_tensorboard_gets_trl_metric_names(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = {}
    for algo in ("dpo", "grpo"):
        worker.run(algo, tmp_path / algo, max_steps=2, report_to="tensorboard")
        acc = EventAccumulator(str(tmp_path / algo / "tb"))
        acc.Reload()
        tags[algo] = set(acc.Tags()["scalars"])
        assert [e.step for e in acc.Scalars("loss")] == [1, 2]
    assert {"loss", "learning_rate", "grad_norm", "rewards/chosen", "rewards/margins",
            "rewards/accuracies", "logps/chosen"} <= tags["dpo"]
    assert {"loss", "reward", "reward_std", "kl", "completions/mean_length", "entropy",
            "rewards/length_reward/mean", "frac_reward_zero_std"} <= tags["grpo"]


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_wandb_and_mlflow_trackers_receive_each_logged_step(tmp_path, monkeypatch, name):
    """The optional trackers through stand-in modules: the exact calls, with or without the packages installed."""
    import importlib.machinery
    import types

    calls = []
    fake = types.ModuleType(name)
    fake.__spec__ = importlib.machinery.ModuleSpec(name, None)
    if name == "wandb":
        run = types.SimpleNamespace(log=lambda metrics, step: calls.append((step, metrics)),
                                    finish=lambda: calls.append("end"))
        fake.init = lambda **kw: calls.append(("init", kw["config"]["report_to"])) or run
    else:
        fake.start_run = lambda **kw: calls.append(("init", "mlflow"))
        fake.log_params = lambda params: None
        fake.log_metrics = lambda metrics, step: calls.append((step, metrics))
        fake.end_run = lambda: calls.append("end")
    monkeypatch.setitem(sys.modules, name, fake)
    worker.run("grpo", tmp_path / name, max_steps=2, report_to=name)
    assert calls[0] == ("init", name) and calls[-1] == "end"
    assert [c[0] for c in calls[1:-1]] == [1, 2]
    assert {"loss", "reward", "reward_std", "completions/mean_length", "learning_rate"} <= calls[1][1].keys()


def _wandb_history(run_file: Path) -> list[dict]:
    """The history rows of an offline wandb run file (``run-*.wandb``: a 7-byte header, then LevelDB-log
    records of 32 KiB blocks, each ``crc32 (4) | length (2, little-endian) | type (1)``, holding protobuf
    ``Record`` messages)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    buf, block, rows, pending = run_file.read_bytes(), 32768, [], b""
    assert buf[:4] == b":W&B"
    pos = 7
    while pos + 7 <= len(buf):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", buf[pos + 4 : pos + 7])
        pending += buf[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST fragment: one whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_wandb_and_mlflow_store_trl_metric_names(tmp_path, monkeypatch, name):
    """The real packages (optional, skipped when absent): wandb offline in a temporary folder, MLflow in a
    ``file:`` store; a 2-step SFT and a 2-step GRPO run, every step's metrics read back under TRL's names."""
    pytest.importorskip(name)
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    logged = {}
    try:
        for algo in ("sft", "grpo"):
            history = worker.run(algo, tmp_path / algo, max_steps=2, report_to=name).history
            if name == "wandb":
                (run_file,) = (tmp_path / algo / "wandb").glob("offline-run-*/run-*.wandb")
                rows = _wandb_history(run_file)
                assert [r["_step"] for r in rows] == [1, 2]
                logged[algo] = rows
            else:
                from mlflow.tracking import MlflowClient

                client = MlflowClient()
                (run,) = client.search_runs(["0"], filter_string=f"tags.mlflow.runName = '{algo}'")
                series = {k: {m.step: m.value for m in client.get_metric_history(run.info.run_id, k)}
                          for k in run.data.metrics}
                assert {step for s in series.values() for step in s} == {1, 2}
                logged[algo] = [{k: s[step] for k, s in series.items() if step in s} for step in (1, 2)]
            for row, ours in zip(logged[algo], history):
                assert row["loss"] == pytest.approx(ours["loss"], rel=1e-6)
    finally:
        if name == "wandb":
            import wandb

            wandb.teardown()  # stops wandb's service process
    assert {"loss", "learning_rate", "grad_norm", "num_tokens"} <= logged["sft"][1].keys()
    assert {"loss", "reward", "reward_std", "kl", "completions/mean_length", "entropy", "frac_reward_zero_std",
            "rewards/length_reward/mean"} <= logged["grpo"][1].keys()


# ------------------------------------------------------------------- bad settings


@pytest.mark.parametrize("cls,field,value,match", [
    (SFTConfig, "mixed_precision", "fp8", "mixed_precision"),
    (DPOConfig, "gradient_accumulation_steps", 0, "gradient_accumulation_steps"),
    (GRPOConfig, "report_to", "comet", "report_to"),
    (SFTConfig, "device", "tpu", "device"),
])
def test_bad_settings_are_config_errors_naming_the_field(cls, field, value, match):
    with pytest.raises(ConfigError, match=match):
        cls(**{field: value})


def test_batch_not_divisible_names_the_fields():
    with pytest.raises(ConfigError, match=r"batch_size=8 .*gradient_accumulation_steps \(3\)"):
        SFTConfig(batch_size=8, gradient_accumulation_steps=3)
    with pytest.raises(ConfigError, match=r"batch_size=8 .*processes \(1\) × gradient_accumulation_steps \(4\) "
                                          r"× num_generations \(4\)"):
        GRPOConfig(batch_size=8, num_generations=4, gradient_accumulation_steps=4)
    assert SFTConfig(batch_size=8, gradient_accumulation_steps=2).micro_batch_size(2) == 2


def test_processes_that_do_not_divide_the_batch_fail_before_the_model_loads(monkeypatch):
    import policylab.llm.trainer as trainer_mod

    class TwoProcesses:
        process_index, num_processes, is_main_process, device = 0, 2, True, torch.device("cpu")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(trainer_mod, "make_accelerator", lambda config: TwoProcesses())
    monkeypatch.setattr(trainer_mod, "resolve_model", no_model)
    with pytest.raises(ConfigError, match=r"batch_size=6 .*processes \(2\) × gradient_accumulation_steps \(2\)"):
        worker.make_trainer("sft", "unused", batch_size=6, gradient_accumulation_steps=2)


def test_each_process_samples_from_its_own_seed(monkeypatch):
    """Seeds from (seed, rank, step): two ranks draw differently, the same rank reproducibly."""
    import policylab.llm.trainer as trainer_mod

    def fake(rank):
        return type("Acc", (), {"process_index": rank, "num_processes": 2, "is_main_process": rank == 0,
                                "device": torch.device("cpu")})()

    draws = []
    for rank in (0, 1, 1):
        monkeypatch.setattr(trainer_mod, "make_accelerator", lambda config, rank=rank: fake(rank))
        trainer = worker.make_trainer("grpo", "unused")
        assert trainer.shard(list(range(4))) == [2 * rank, 2 * rank + 1]  # prompts, not completions
        draws.append(torch.rand(4))
    assert not torch.equal(draws[0], draws[1]) and torch.equal(draws[1], draws[2])


def test_missing_tracker_package_is_a_config_error_naming_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"report_to='wandb' needs the wandb package: pip install 'policylab\[wandb\]'"):
        SFTConfig(report_to="wandb")


def test_fp16_or_cuda_without_a_gpu_is_a_config_error(monkeypatch):
    from policylab.llm.trainer import make_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device='cuda' but no CUDA device"):
        make_accelerator(SFTConfig(device="cuda"))


@pytest.mark.parametrize("args,match", [
    (["--mixed-precision", "fp8"], "--mixed_precision"),
    (["--gradient-accumulation-steps", "0"], "--gradient_accumulation_steps"),
    (["--batch-size", "8", "--gradient-accumulation-steps", "3"], "gradient_accumulation_steps (3)"),
])
def test_cli_bad_settings_exit_2_with_one_line_before_any_model_loads(tmp_path, capsys, args, match):
    from policylab.cli import main

    rc = main(["llm", "sft", "--model", str(tmp_path / "nope"), "--train_file", "x.jsonl", *args])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_help_lists_the_new_options(capsys):
    from policylab.cli import main

    for command in ("sft", "dpo", "grpo", "reward"):
        assert main(["llm", command, "--help"]) in (0, None)
        text = capsys.readouterr().out
        for option in ("--device", "--mixed-precision", "--gradient-accumulation-steps",
                       "--gradient-checkpointing", "--report-to"):
            assert option in text, (command, option)
