"""Issue 11, language-model part: each fault found by the hostile pass, reproduced and now fixed.

NaN configs and divergence, a second writer, checkpoints that verify themselves (and the fallback),
resume with another model or hyper-parameters, context length, model folders with bad files, bad
reward values, empty leftovers, the lazy loader, use_hf_generate, resume without a checkpoint,
make-data arguments.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
import types
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from policylab.errors import (
    CheckpointError,
    ConfigError,
    DivergenceError,
    InputError,
    RunLockedError,
)
from policylab.llm.checkpoint import latest_checkpoint, verify_checkpoint
from policylab.llm.dpo import DPOConfig, DPOTrainer
from policylab.llm.grpo import GRPOConfig, GRPOTrainer
from policylab.llm.models import resolve_model
from policylab.llm.supervised import SFTConfig, SFTTrainer
from policylab.llm.task import dpo_records, make_addition_problems, sft_records, write_addition_data
from policylab.llm.tiny import make_char_tokenizer, make_tiny_llama

torch.set_num_threads(1)
TRAIN, _ = make_addition_problems(max_a=9, max_b=9, test_fraction=0.2, seed=0)


@pytest.fixture
def tok():
    return make_char_tokenizer()


def sft_run(tmp_path, tok, max_steps=2, **kw):
    cfg = SFTConfig(max_steps=max_steps, batch_size=4, learning_rate=1e-3, progress=False,
                    output_dir=str(tmp_path / "run"), **kw)
    return SFTTrainer(make_tiny_llama(len(tok)), tok, cfg, sft_records(TRAIN))


def params(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


# ------------------------------------------------------------------- config fields (fault 1, 5)

BAD_FIELDS = [
    (GRPOConfig, "beta", math.nan), (GRPOConfig, "beta", -0.1), (GRPOConfig, "top_p", 1.5),
    (GRPOConfig, "top_p", 0.0), (GRPOConfig, "temperature", 0.0), (GRPOConfig, "temperature", math.inf),
    (GRPOConfig, "num_generations", 0), (GRPOConfig, "clip_eps", math.nan), (GRPOConfig, "top_k", -1),
    (GRPOConfig, "num_iterations", 0), (GRPOConfig, "max_completion_length", 0),
    (GRPOConfig, "reward_weights", [1.0, math.nan]), (GRPOConfig, "learning_rate", math.nan),
    (DPOConfig, "beta", math.nan), (DPOConfig, "label_smoothing", 0.7), (DPOConfig, "learning_rate", -1e-3),
    (SFTConfig, "learning_rate", math.inf), (SFTConfig, "adam_betas", (0.9, 1.0)), (SFTConfig, "max_steps", 0),
    (SFTConfig, "weight_decay", math.nan), (SFTConfig, "max_grad_norm", -1.0), (SFTConfig, "batch_size", 2.5),
    (SFTConfig, "seed", -1), (SFTConfig, "max_length", 1), (SFTConfig, "learning_rate", "abc"),
]


@pytest.mark.parametrize(("cls", "field", "value"), BAD_FIELDS)
def test_bad_config_field_is_a_config_error_naming_it(cls, field, value):
    with pytest.raises(ConfigError, match=rf"^{field}(=\S+)? must be"):
        cls(**{field: value})


@settings(max_examples=40, deadline=None)
@given(field=st.sampled_from(["beta", "top_p", "temperature", "clip_eps", "learning_rate", "weight_decay"]),
       value=st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -1e-9]))
def test_non_finite_or_negative_floats_are_rejected(field, value):
    with pytest.raises(ConfigError, match=field):
        GRPOConfig(**{field: value})


def test_cli_beta_nan_exits_2_before_any_model_loads(tmp_path, capsys):
    from policylab.cli import main

    # the model folder does not exist: the config error must come first
    rc = main(["llm", "grpo", "--model", str(tmp_path / "nope"), "--train_file", "x.jsonl", "--beta", "nan"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--beta: must be in [0, inf), got 'nan'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------- divergence at run time (fault 1)


def test_nan_loss_stops_with_divergence_error_and_keeps_the_last_checkpoint(tmp_path, tok):
    trainer = sft_run(tmp_path, tok, max_steps=5, save_steps=1, save_total_limit=0)

    def poison(module, args, output):  # the model's output turns NaN at the third step
        if trainer.step == 2:
            output.logits = output.logits * math.nan
        return output

    trainer.model.register_forward_hook(poison)
    good = (tmp_path / "run" / "checkpoint-2" / "model.safetensors")
    with pytest.raises(DivergenceError, match=r"^step 3: the loss is nan"):
        trainer.train()
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    verify_checkpoint(good.parent)
    assert bool(torch.isfinite(params(trainer.model)).all())  # the step did not touch the weights
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()] == [1, 2]


def test_nan_weights_are_never_saved_and_never_sampled(tmp_path, tok):
    trainer = sft_run(tmp_path, tok)
    with torch.no_grad():
        next(trainer.model.parameters())[0, 0] = math.nan
    with pytest.raises(DivergenceError, match="parameter model.embed_tokens.weight"):
        trainer.save()
    assert not list((tmp_path / "run").glob("checkpoint-*"))
    cfg = GRPOConfig(max_steps=1, batch_size=4, num_generations=4, max_completion_length=3, progress=False,
                     output_dir=str(tmp_path / "g"))
    model = make_tiny_llama(len(tok))
    with torch.no_grad():
        model.lm_head.weight.fill_(math.nan)
    with pytest.raises(DivergenceError, match="logits are not finite"):
        GRPOTrainer(model, tok, cfg, TRAIN).train()


# ------------------------------------------------------------------- one writer (fault 2)


def test_second_writer_fails_at_once(tmp_path, tok):
    run = tmp_path / "run"
    script = ("import sys; from policylab.io.lock import RunLock; l = RunLock(sys.argv[1]).acquire(); "
              "print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(run)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        trainer = sft_run(tmp_path, tok)
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            trainer.train()
        assert not (run / "log.jsonl").exists() and not list(run.glob("checkpoint-*"))
    finally:
        holder.communicate("", timeout=30)
    assert trainer.train()[-1]["step"] == 2  # the lock is released with its holder


# ------------------------------------------------------------------- checkpoints verify (fault 3)


@pytest.fixture
def two_checkpoints(tmp_path, tok):
    trainer = sft_run(tmp_path, tok, max_steps=2, save_steps=1, save_total_limit=0)
    trainer.train()
    return tmp_path / "run", trainer


def flip_byte(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_byte_is_detected_and_resume_falls_back(two_checkpoints, tmp_path, tok):
    run, _ = two_checkpoints
    flip_byte(run / "checkpoint-2" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"checkpoint-2/model.safetensors does not match its SHA-256"):
        verify_checkpoint(run / "checkpoint-2")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        resolve_model(run / "checkpoint-2")
    with pytest.warns(UserWarning, match=r"skipping .*checkpoint-2: .*falling back"):
        assert latest_checkpoint(run).name == "checkpoint-1"
    trainer = sft_run(tmp_path, tok, max_steps=3, save_steps=1, save_total_limit=0)
    with pytest.warns(UserWarning, match="checkpoint-2"):
        history = trainer.train(resume_from="latest")
    assert [h["step"] for h in history] == [2, 3]  # resumed after step 1
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # log truncated back to the checkpoint's step, then continued


@pytest.mark.parametrize("victim", ["model.safetensors", "trainer_state.json", "trainer_state.safetensors"])
def test_truncated_file_is_a_checkpoint_error_naming_it(two_checkpoints, victim):
    run, trainer = two_checkpoints
    path = run / "checkpoint-2" / victim
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match=f"checkpoint-2/{victim}"):
        trainer.resume(run / "checkpoint-2")


def test_missing_manifest_and_all_bad_checkpoints(two_checkpoints, tmp_path, tok):
    run, _ = two_checkpoints
    (run / "checkpoint-2" / "manifest.json").unlink()
    flip_byte(run / "checkpoint-1" / "trainer_state.json", 10)
    with pytest.raises(CheckpointError, match="no manifest.json"):
        verify_checkpoint(run / "checkpoint-2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="run folder .* has no checkpoint that verifies"):
            resolve_model(run)
        with pytest.raises(CheckpointError, match="nothing to resume"):
            sft_run(tmp_path, tok).train(resume_from="latest")


# ------------------------------------------------------------------- resume takes no liberties (fault 8)


def test_resume_refuses_another_model_or_learning_rate(two_checkpoints, tmp_path, tok):
    run, _ = two_checkpoints
    other = sft_run(tmp_path, tok, max_steps=3)
    other.config.model = "other-folder"
    with pytest.raises(CheckpointError, match="trained from model 'tiny', not 'other-folder'"):
        other.train(resume_from="latest")
    cfg = SFTConfig(max_steps=3, batch_size=4, learning_rate=5e-3, progress=False, output_dir=str(run))
    with pytest.raises(CheckpointError, match=r"learning_rate: 0.001 -> 0.005"):
        SFTTrainer(make_tiny_llama(len(tok)), tok, cfg, sft_records(TRAIN)).train(resume_from="latest")
    assert sft_run(tmp_path, tok, max_steps=3).train(resume_from="latest")[-1]["step"] == 3  # max_steps may change


def test_cli_resume_without_checkpoint_is_refused(tmp_path, capsys):
    from policylab.cli import main

    data = tmp_path / "data"
    write_addition_data(data, max_a=9)
    rc = main(["llm", "dpo", "--model", "tiny", "--train_file", str(data / "dpo.jsonl"), "--output_dir",
               str(tmp_path / "run"), "--progress", "false", "--resume"])
    assert rc == 2 and "no checkpoint in" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------- context length (fault 9)


def test_prompt_plus_completion_beyond_the_context_is_refused(tmp_path, tok):
    long_prompt = [{"prompt": "1+" * 50 + "1=", "answer": "51"}]  # 103 tokens (with BOS) + 64 new > 128 positions
    cfg = GRPOConfig(max_steps=1, batch_size=4, num_generations=4, max_completion_length=64, progress=False,
                     output_dir=str(tmp_path / "g"))
    with pytest.raises(ConfigError, match=r"record 0: prompt \+ max_completion_length is 167 tokens.*=128"):
        GRPOTrainer(make_tiny_llama(len(tok)), tok, cfg, long_prompt)
    rows = [{"prompt": "1+1=", "completion": "2" * 200}]
    with pytest.raises(ConfigError, match=r"record 0: prompt \+ completion is 206 tokens.*set max_length"):
        SFTTrainer(make_tiny_llama(len(tok)), tok, SFTConfig(output_dir=str(tmp_path / "s")), rows)
    with pytest.warns(UserWarning, match="1 of 1 'completion' rows truncated to max_length=128"):
        trainer = SFTTrainer(make_tiny_llama(len(tok)), tok, SFTConfig(max_length=128, output_dir=str(tmp_path / "s")),
                             rows)
    assert len(trainer.prompt_ids[0]) + len(trainer.completion_ids[0]) == 128
    with pytest.raises(ConfigError, match="record 0: prompt \\+ completion"):
        DPOTrainer(make_tiny_llama(len(tok)), tok, DPOConfig(output_dir=str(tmp_path / "d")),
                   [{"prompt": "1+1=", "chosen": "2" * 200, "rejected": "3"}])


# ------------------------------------------------------------------- model folders (fault 6)


def test_bad_model_folders_are_one_line_errors(tmp_path, tok, capsys):
    from policylab.cli import main

    good = tmp_path / "good"
    make_tiny_llama(len(tok)).save_pretrained(good)
    tok.save_pretrained(good)
    bad_config = tmp_path / "bad_config"
    bad_config.mkdir()
    for f in good.iterdir():
        (bad_config / f.name).write_bytes(f.read_bytes())
    (bad_config / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"bad_config/config.json: not a valid JSON config"):
        resolve_model(bad_config)
    pickle_only = tmp_path / "pickle_only"
    pickle_only.mkdir()
    for f in good.iterdir():
        if f.name != "model.safetensors":
            (pickle_only / f.name).write_bytes(f.read_bytes())
    (pickle_only / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(CheckpointError, match=r"only pickle weights \(pytorch_model.bin\)"):
        resolve_model(pickle_only)
    data = tmp_path / "test.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2"}\n')
    capsys.readouterr()
    for folder in (bad_config, pickle_only):
        assert main(["llm", "eval", "--model", str(folder), "--data", str(data)]) == 2
        err = capsys.readouterr().err
        assert folder.name in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------- reward values (fault 11)


@pytest.mark.parametrize(("value", "error", "match"), [
    ("1.0", InputError, r"reward odd returned '1.0' for completion 0 .*must be numbers, not str"),
    (None, InputError, r"reward odd returned None .*not NoneType"),
    (1e39, DivergenceError, r"step 1: reward odd returned 1e\+39 .*finite float32"),
    (math.inf, DivergenceError, r"step 1: reward odd returned inf"),
])
def test_bad_reward_values_name_the_function_and_value(tmp_path, tok, value, error, match):
    def odd(prompts, completions, **_):
        return [value] * len(completions)

    cfg = GRPOConfig(max_steps=1, batch_size=4, num_generations=4, max_completion_length=3, progress=False,
                     output_dir=str(tmp_path / "g"))
    with pytest.raises(error, match=match):
        GRPOTrainer(make_tiny_llama(len(tok)), tok, cfg, TRAIN, reward_funcs=[odd]).train()
    assert not (tmp_path / "g").exists()  # fault 12: no empty log.jsonl, no empty run folder


def test_tensor_rewards_and_hf_generate_work(tmp_path, tok):
    def tensor_reward(prompts, completions, **_):
        return [torch.tensor(float(len(c))) for c in completions]

    cfg = GRPOConfig(max_steps=1, batch_size=4, num_generations=4, max_completion_length=3, progress=False,
                     output_dir=str(tmp_path / "g"), use_hf_generate=True)
    history = GRPOTrainer(make_tiny_llama(len(tok)), tok, cfg, TRAIN, reward_funcs=[tensor_reward]).train()
    assert history[-1]["rewards/mean"] > 0 and (tmp_path / "g" / "log.jsonl").read_text().count("\n") == 1


# ------------------------------------------------------------------- smaller (fault 13)


def test_every_exported_name_imports_as_documented():
    from policylab import llm

    for mod in ("supervised", "dpo", "grpo", "reward", "sampling", "data", "task", "tiny", "trainer", "models",
                "batching"):
        importlib.import_module(f"policylab.llm.{mod}")  # worst case: every submodule already imported
    for name in llm.__all__:
        obj = getattr(importlib.import_module("policylab.llm"), name)
        assert not isinstance(obj, types.ModuleType), name
        assert obj is getattr(importlib.import_module(llm._LAZY.get(name, "policylab.llm.logprobs")), name)
    from policylab.llm import sft

    assert callable(sft) and sft.__name__ == "sft"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"test_fraction": 1.5}, r"test_fraction must be a number in \[0.0, 1.0\], got 1.5"),
    ({"test_fraction": math.nan}, "test_fraction must be a number"),
    ({"test_fraction": 1.0}, "leaves an empty train split"),
    ({"test_fraction": 0.0001, "max_a": 2, "max_b": 2}, "leaves an empty test split"),
    ({"max_a": -5}, r"max_a must be an integer in \[0, 100000\], got -5"),
    ({"off_by_one": 2.0}, "off_by_one must be"),
    ({"seed": -1}, "seed must be"),
])
def test_make_data_arguments_are_checked_before_writing(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        write_addition_data(tmp_path / "d", **kwargs)
    assert not (tmp_path / "d").exists()


def test_cli_make_data_bad_fraction_exits_2(tmp_path, capsys):
    from policylab.cli import main

    assert main(["llm", "make-data", "--out", str(tmp_path / "d"), "--test-fraction", "nan"]) == 2
    assert "test_fraction" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_dpo_rows_still_train_after_the_checks(tmp_path, tok):
    cfg = DPOConfig(max_steps=1, batch_size=4, learning_rate=1e-3, progress=False, output_dir=str(tmp_path / "d"))
    assert DPOTrainer(make_tiny_llama(len(tok)), tok, cfg, dpo_records(TRAIN)).train()[-1]["step"] == 1


def test_ctrl_c_saves_the_finished_step_then_exits_130(tmp_path):
    """Issue 11 item 7 on the LLM side: a first Ctrl-C lets the running optimizer step finish,
    saves checkpoint-<step> of that consistent state, and exits 130; --resume continues from it."""
    import json as _json
    import os as _os
    import signal as _signal
    import subprocess as _sp
    import sys as _sys
    import time as _time

    from policylab.llm.task import write_addition_data

    write_addition_data(tmp_path / "data", 20, 5, 0.2, 0, 0.5)
    out = tmp_path / "run"
    cmd = [_sys.executable, "-m", "policylab", "llm", "sft", "--model", "tiny", "--train_file",
           str(tmp_path / "data" / "sft.jsonl"), "--batch_size", "4", "--max_prompt_length", "16",
           "--max_length", "24", "--save_steps", "0", "--max_steps", "100000", "--output_dir", str(out),
           "--progress", "false"]
    proc = _sp.Popen(cmd, stdout=_sp.PIPE, stderr=_sp.PIPE, text=True, env={**_os.environ, "OMP_NUM_THREADS": "1"})
    log = out / "log.jsonl"
    deadline = _time.monotonic() + 240
    while _time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            break
        _time.sleep(0.05)
    proc.send_signal(_signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    steps = [_json.loads(x)["step"] for x in log.read_text().splitlines()]
    saved = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert saved == [steps[-1]]  # the step the interrupt let finish, and only it
    resume = _sp.run([*cmd[:-6], "--max_steps", str(steps[-1] + 2), "--output_dir", str(out), "--progress",
                      "false", "--resume"], check=False, capture_output=True, text=True, timeout=300,
                     env={**_os.environ, "OMP_NUM_THREADS": "1"})
    assert resume.returncode == 0, resume.stderr[-2000:]
    assert [_json.loads(x)["step"] for x in log.read_text().splitlines()] == [*steps, steps[-1] + 1, steps[-1] + 2]
