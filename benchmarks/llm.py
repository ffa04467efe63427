"""DPO and GRPO on a tiny and a medium Llama: policylab's trainers vs TRL 1.16's, same model, data and settings.

Same model on both sides: ``policylab.llm.make_tiny_llama`` (2 layers, hidden 64, 4 heads, MLP 128,
untied embeddings) over the 99-token character tokenizer ``make_char_tokenizer``, seed 0, fp32, CPU,
``torch.set_num_threads(1)`` (and OMP_NUM_THREADS=1). Same optimizer: AdamW, lr 1e-6, betas
(0.9, 0.999), no weight decay, grad-norm clip 1.0, constant schedule, no warmup. TRL is run as a
plain fp32 loop (its 1.16 defaults turn bf16 autocast and gradient checkpointing on), logging every
10⁶ steps, no tqdm, no checkpoints; policylab with progress=False (it still appends log.jsonl).

  DPO   batch 8 pairs, every sequence prompt + completion + EOS = 32 tokens (BOS + 20-char prompt
        + 10-char completion + EOS), 64 distinct rows, β 0.1, sigmoid loss, reference = a frozen
        in-memory copy run every step (TRL's default; precompute off on both sides); "dpo-pre":
        reference log-probs precomputed once before training on both sides (TRL
        precompute_ref_log_probs, policylab precompute_ref_logps; the precompute is not timed).
        tokens/s = Σ attention-mask tokens of the chosen and rejected rows (TRL's num_tokens) / s.
  GRPO  1 prompt × G = 8 completions per step (batch 8), max 32 new tokens, temperature 1, β 0
        (TRL 1.16's default: no reference model), loss "dapo" (TRL default), std-scaled group
        advantages, μ = 1. Prompts are the 8 addition problems below, in the same order; the
        reward is the same cheap length function. Completions are sampled (they differ between
        the sides): the mean completion length is reported; with a random 99-token model EOS is
        rare, so most steps generate the full 32 tokens on both sides. Medium: EOS is suppressed on
        both sides (TRL ``generation_kwargs={"suppress_tokens": [eos]}``; policylab: its sampler
        gets logits[:, eos] = −inf), so every completion has exactly 250 tokens on both sides.

Timing: each side runs in its own fresh subprocess; per-step wall time is the interval between the
ends of consecutive optimizer steps (TRL: ``TrainerCallback.on_step_end``; policylab: a wrapper
around ``Trainer._step``), so everything a training loop does per step (batching, collation,
generation, reward, loss, backward, AdamW, logging) is in; construction and the final checkpoint
are not. The first --warmup steps are dropped; the median of the rest is the run's value. The
process CPU time per step (``time.process_time``, one thread) is measured the same way: other jobs
on a shared machine stretch wall time a lot and CPU time much less. "generate" is the wall time in
each trainer's sampling function: TRL ``GRPOTrainer._generate_single_turn`` (prompt padding,
``model.generate``, EOS masking), policylab ``policylab.llm.grpo.generate`` (the same, plus decoding
the 8 completions to text, which TRL does outside). The two sides run back to back --repeats
times (order alternating); reported: the best (least disturbed) run per side, the CPU time, and
the median over the pairs of the per-pair ratio. A target counts as met only when both the paired
wall-time ratio and the CPU-time ratio meet it.

Memory: peak RSS of each subprocess (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), i.e. the
high-water mark including the interpreter, torch/transformers (and TRL on its side) imports; and
"train ΔRSS" = peak − the high-water mark after the trainer was built (what training itself adds).
tracemalloc would not see torch's allocations.

Medium model (``--sizes medium``, issue 13): a config-built 10.7M-parameter Llama (6 layers, hidden
384, 6 heads, MLP 1024) at sequence length 256 — DPO 2 pairs of BOS + 127 + 127 characters + EOS per
step (reference model each step), GRPO G = 8 completions of 250 new tokens — with the same timing,
--medium-steps timed steps after one warm-up step, --medium-repeats interleaved pairs. Memory
(``--memory``): DPO with a reference model, full fine-tuning (reference = frozen copy) vs LoRA r = 16
on every linear layer (reference = adapters disabled), each in a fresh subprocess, interleaved, the
same model, batch (2 pairs × 256 tokens) and settings on both sides, per --memory-configs: the
medium model, and a "large" 29.9M-parameter one (6 layers, hidden 640, 10 heads, MLP 1728) with
gradient checkpointing (TRL's default) on both sides; peak RSS by ``resource.getrusage`` maxrss, and
the same minus the RSS after the imports, and the CPU time per step. --malloc-mmap-threshold B sets the
trainers' ``malloc_mmap_threshold`` (glibc's M_MMAP_THRESHOLD: large freed tensors go back to the OS) on
both sides; --glibc-tunables T runs both sides' processes with ``GLIBC_TUNABLES=T`` (a deployment
setting outside the library, e.g. ``glibc.malloc.tcache_count=0``).

    python benchmarks/llm.py                       # tiny: 30 DPO / 12 GRPO steps, 4 pairs; medium; memory
    python benchmarks/llm.py --sizes medium        # only the medium-model rows and the memory table
    python benchmarks/llm.py --sizes medium --only memory   # only the memory table
    python benchmarks/llm.py --quick               # smoke run
    python benchmarks/llm.py --only dpo --dpo-steps 100
    python benchmarks/llm.py --processes           # DPO tokens/s, 2 processes vs 1 (llm_processes.py)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import itertools
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

LR = 1e-6
#: Model and data per size. "medium": a config-built Llama of 10.7M parameters (6 layers, hidden 384,
#: 6 heads, MLP 1024) at sequence length 256: DPO rows BOS + 127 + 127 characters + EOS, GRPO prompts
#: of 5–6 tokens + 250 new tokens. Targets (issue 13): DPO tokens/s ≥ 1.3× TRL's, GRPO step ≤ 0.6×.
SIZES = {
    "tiny": {"model": {}, "dpo_batch": 8, "prompt_chars": 20, "completion_chars": 10, "grpo_new": 32,
             "algos": ("dpo", "dpo-pre", "grpo"), "dpo_target": 1.5, "grpo_target": 0.5},
    "medium": {"model": {"hidden": 384, "layers": 6, "heads": 6, "intermediate": 1024, "max_positions": 512},
               "dpo_batch": 2, "prompt_chars": 127, "completion_chars": 127, "grpo_new": 250, "grpo_full_length": True,
               "algos": ("dpo", "grpo"), "dpo_target": 1.3, "grpo_target": 0.6},
    "large": {"model": {"hidden": 640, "layers": 6, "heads": 10, "intermediate": 1728, "max_positions": 512},
              "dpo_batch": 2, "prompt_chars": 127, "completion_chars": 127, "algos": ()},  # memory table only
    # memory table only: 85.1M parameters (GPT-2 small's width and depth), to show how the ratio moves with size
    "xl": {"model": {"hidden": 768, "layers": 12, "heads": 12, "intermediate": 2048, "max_positions": 512},
           "dpo_batch": 2, "prompt_chars": 127, "completion_chars": 127, "algos": ()},
}
DPO_BATCH = SIZES["tiny"]["dpo_batch"]
PROMPT_CHARS, COMPLETION_CHARS = 20, 10  # tiny: + BOS + EOS = 32 tokens per sequence
GRPO_G, GRPO_NEW_TOKENS = 8, 32
GRPO_PROMPTS = [f"{a}+{b}=" for a, b in [(12, 7), (3, 4), (45, 9), (60, 2), (8, 8), (71, 5), (19, 1), (33, 6)]]
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ALGOS = ("dpo", "dpo-pre", "grpo")  # dpo-pre: reference log-probs precomputed once on both sides


def dpo_rows(n: int = 64, prompt_chars: int = PROMPT_CHARS, completion_chars: int = COMPLETION_CHARS) -> list[dict]:
    import random

    rng = random.Random(0)

    def s(k):
        return "".join(rng.choice(ALPHABET) for _ in range(k))

    return [{"prompt": s(prompt_chars), "chosen": s(completion_chars), "rejected": s(completion_chars)} for _ in range(n)]


def length_reward(prompts, completions, **kwargs) -> list[float]:
    """The same cheap reward on both sides: characters in the completion, capped at 16."""
    return [float(min(len(c), 16)) for c in completions]


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _trl_args(tmp: str, steps: int) -> dict:
    return {
        "output_dir": tmp, "report_to": "none", "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
        "save_strategy": "no", "disable_tqdm": True, "logging_steps": 10**6, "seed": 0, "max_steps": steps,
        "learning_rate": LR, "optim": "adamw_torch", "weight_decay": 0.0, "lr_scheduler_type": "constant",
        "warmup_steps": 0, "max_grad_norm": 1.0, "dataloader_num_workers": 0,
    }


class _GenTimer:
    """Wraps a sampling function; accumulates the seconds spent in it per optimizer step."""

    def __init__(self):
        self.total = 0.0

    def wrap(self, fn):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.total += time.perf_counter() - t

        return timed


# ------------------------------------------------------------------------------------ workers
def worker(algo: str, side: str, steps: int, size: str = "tiny") -> dict:
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    from policylab.llm import make_char_tokenizer, make_tiny_llama

    spec = SIZES[size]
    dpo_batch, grpo_new = spec["dpo_batch"], spec["grpo_new"]
    full_length = spec.get("grpo_full_length", False)  # EOS suppressed: every completion has grpo_new tokens
    rows = dpo_rows(64, spec["prompt_chars"], spec["completion_chars"])
    tok = make_char_tokenizer()
    model = make_tiny_llama(len(tok), seed=0, **spec["model"])
    n_params = sum(p.numel() for p in model.parameters())
    ends: list[float] = []  # perf_counter at the end of each optimizer step
    cpu_ends: list[float] = []  # process CPU time at the same moments
    gen_per_step: list[float] = []
    lengths: list[float] = []
    gen = _GenTimer() if algo == "grpo" else None
    tmp = tempfile.mkdtemp(prefix=f"bench-llm-{algo}-{side}-")
    tokens_per_step = None

    if side == "trl":
        import datasets
        import trl
        from transformers import TrainerCallback

        class StepClock(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                ends.append(time.perf_counter())
                cpu_ends.append(time.process_time())
                if gen is not None:
                    gen_per_step.append(gen.total)
                    gen.total = 0.0
                    lengths.append(trainer._metrics["train"]["completions/mean_length"][-1])

        if algo.startswith("dpo"):
            precompute = algo == "dpo-pre"
            trainer = trl.DPOTrainer(
                model=model, ref_model=None if precompute else _frozen(model), processing_class=tok,
                train_dataset=datasets.Dataset.from_list(rows),
                args=trl.DPOConfig(**_trl_args(tmp, steps), per_device_train_batch_size=dpo_batch, beta=0.1,
                                   precompute_ref_log_probs=precompute),
                callbacks=[StepClock()],
            )
            batch = trainer.data_collator([trainer.train_dataset[i] for i in range(dpo_batch)])
            tokens_per_step = int(batch["attention_mask"].sum())
        else:
            trainer = trl.GRPOTrainer(
                model=model, reward_funcs=length_reward, processing_class=tok,
                train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in GRPO_PROMPTS]),
                args=trl.GRPOConfig(
                    **_trl_args(tmp, steps), per_device_train_batch_size=GRPO_G, num_generations=GRPO_G,
                    max_completion_length=grpo_new, temperature=1.0, beta=0.0, loss_type="dapo",
                    scale_rewards="group", num_iterations=1, shuffle_dataset=False,
                    generation_kwargs={"suppress_tokens": [tok.eos_token_id]} if full_length else None,
                ),
                callbacks=[StepClock()],
            )
            # prompt padding + model.generate + EOS masking (tokenizing/decoding are outside)
            trainer._generate_single_turn = gen.wrap(trainer._generate_single_turn)
        rss_setup = _max_rss_mb()
        trainer.train()
    else:
        from policylab.llm import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer

        common = {"output_dir": tmp, "max_steps": steps, "learning_rate": LR, "weight_decay": 0.0,
                  "max_grad_norm": 1.0, "progress": False, "logging_steps": 1, "seed": 0, "report_to": "none"}
        if algo.startswith("dpo"):
            trainer = DPOTrainer(model, tok, DPOConfig(**common, batch_size=dpo_batch, beta=0.1,
                                                       precompute_ref_logps=algo == "dpo-pre"), rows)
        else:
            trainer = GRPOTrainer(
                model, tok,
                GRPOConfig(**common, batch_size=GRPO_G, num_generations=GRPO_G, max_completion_length=grpo_new,
                           temperature=1.0, beta=0.0, loss_type="dapo", scale_rewards="std", num_iterations=1),
                [{"prompt": p} for p in GRPO_PROMPTS], reward_funcs=[length_reward],
            )
            import policylab.llm.grpo as pl_grpo  # its sampler: padding + KV-cache decoding + decode to text

            pl_grpo.generate = gen.wrap(pl_grpo.generate)
            if full_length:  # EOS never sampled, as TRL's suppress_tokens=[eos] (logits[:, eos] = −inf)
                import policylab.llm.sampling as pl_sampling

                pl_sampling.sample_next_token = _without_token(pl_sampling.sample_next_token, tok.eos_token_id)
        inner = trainer._step

        def timed_step(step):
            out = inner(step)
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())
            if gen is not None:
                gen_per_step.append(gen.total)
                gen.total = 0.0
            return out

        trainer._step = timed_step
        rss_setup = _max_rss_mb()
        history = trainer.train()
        if algo.startswith("dpo"):
            tokens_per_step = int(history[0]["num_tokens"])
        else:
            lengths = [h["completion_length"] for h in history]

    rss_peak = _max_rss_mb()
    step_times = [b - a for a, b in itertools.pairwise(ends)]  # (steps − 1) intervals
    return {
        "algo": algo, "side": side, "size": size, "params": n_params, "step_s": step_times,
        "cpu_step_s": [b - a for a, b in itertools.pairwise(cpu_ends)],
        "gen_s": gen_per_step[1:], "tokens_per_step": tokens_per_step,
        "mean_completion_length": statistics.fmean(lengths) if lengths else None,
        "rss_setup_mb": rss_setup, "rss_peak_mb": rss_peak,
    }


def _without_token(sample, token: int):
    """``sample_next_token`` with ``token`` never drawn, as HF's SuppressTokensLogitsProcessor (its logit set
    to −10³⁰, not −inf: probability exactly 0, and the sampler's finiteness check still holds)."""

    def suppressed(logits, *a, **k):
        logits = logits.clone()
        logits[:, token] = -1e30
        return sample(logits, *a, **k)

    return suppressed


def _frozen(model):
    import copy

    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


# ------------------------------------------------------------------------------------ memory: LoRA vs full
def memory_worker(mode: str, steps: int, size: str = "medium", checkpointing: bool = False,
                  mmap_threshold: int = 0) -> dict:
    """Peak RSS of a DPO run with a reference: "full" (all weights train, the reference a frozen copy) or
    "lora" (r = 16, α = 32 on q/k/v/o and the MLP; the reference is the base with adapters disabled).
    ``base_mb`` = the RSS high-water mark after the imports, before the model; ``cpu_step_s`` = median
    process CPU time of the steps after the first; ``mmap_threshold``: the config's malloc_mmap_threshold."""
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import peft  # noqa: F401  (imported on both sides so the baselines match)

    from policylab.llm import DPOConfig, DPOTrainer, make_char_tokenizer, make_tiny_llama

    base = _max_rss_mb()
    spec = SIZES[size]
    tok = make_char_tokenizer()
    model = make_tiny_llama(len(tok), seed=0, **spec["model"])
    n_params = sum(p.numel() for p in model.parameters())
    lora = {"use_peft": True, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
            "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    cfg = DPOConfig(output_dir=tempfile.mkdtemp(prefix=f"bench-llm-mem-{mode}-"), max_steps=steps, learning_rate=LR,
                    batch_size=spec["dpo_batch"], beta=0.1, progress=False, save_steps=10**6,
                    gradient_checkpointing=checkpointing, malloc_mmap_threshold=mmap_threshold, report_to="none",
                    **(lora if mode == "lora" else {}))
    trainer = DPOTrainer(model, tok, cfg, dpo_rows(16, spec["prompt_chars"], spec["completion_chars"]))
    trainer.save = lambda *a, **k: None  # the checkpoint write is not part of training's memory
    inner, cpu_ends = trainer._step, []  # CPU clock at the end of each step

    def timed_step(step):
        out = inner(step)
        cpu_ends.append(time.process_time())
        return out

    trainer._step = timed_step
    trainer.train()
    cpu_step = statistics.median(b - a for a, b in itertools.pairwise(cpu_ends)) if steps > 1 else float("nan")
    n_train = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    n_ref = sum(p.numel() for p in trainer.ref_model.parameters())
    return {"mode": mode, "base_mb": base, "peak_mb": _max_rss_mb(), "trainable": n_train, "reference_params": n_ref,
            "params": n_params, "cpu_step_s": cpu_step}


def memory_table(repeats: int, steps: int, configs: list[str], mmap_threshold: int | None = None,
                 glibc_tunables: str | None = None) -> None:
    """LoRA vs full DPO fine-tuning, each in a fresh subprocess, interleaved; one row group per config
    ("medium", "large", "+ckpt" for gradient checkpointing on both sides). ``glibc_tunables``: the
    workers' GLIBC_TUNABLES (read by glibc at process start; outside the library)."""
    allocator = f", malloc_mmap_threshold={mmap_threshold} on both sides" if mmap_threshold else ""
    allocator += f", GLIBC_TUNABLES={glibc_tunables} on both sides" if glibc_tunables else ""
    env = {"GLIBC_TUNABLES": glibc_tunables} if glibc_tunables else None
    print(f"\nLoRA (r 16, all linear layers) vs full fine-tuning, DPO with a reference model, batch 2 pairs × 256 "
          f"tokens, {steps} steps, policylab; lowest of {repeats} runs each (fresh subprocesses, interleaved"
          f"{allocator}):\n")
    print("| config | | full | LoRA r=16 | ratio LoRA / full |")
    print("|---|---|---:|---:|---:|")
    verdicts = []
    for config in configs:
        size, checkpointing = config.removesuffix("+ckpt"), config.endswith("+ckpt")
        runs: dict[str, list[dict]] = {"full": [], "lora": []}
        for r in range(repeats):
            for mode in (("full", "lora") if r % 2 == 0 else ("lora", "full")):
                cmd = [sys.executable, os.path.abspath(__file__), "--memory-worker", mode, "--steps", str(steps),
                       "--size", size, "--mmap-threshold", str(mmap_threshold or 0)] + (["--checkpointing"] if checkpointing else [])
                runs[mode].append(_run(cmd, f"memory/{config}/{mode}", env))
                print(f"# memory {config} {mode} run {r + 1}: peak RSS {runs[mode][-1]['peak_mb']:.0f} MB", file=sys.stderr)
        full = min(runs["full"], key=lambda x: x["peak_mb"])
        lora = min(runs["lora"], key=lambda x: x["peak_mb"])
        label = f"{size} {full['params'] / 1e6:.1f}M" + (", gradient checkpointing" if checkpointing else "")
        d_full, d_lora = full["peak_mb"] - full["base_mb"], lora["peak_mb"] - lora["base_mb"]
        ratio = lora["peak_mb"] / full["peak_mb"]
        print(f"| {label} | trainable parameters | {full['trainable']:,} | {lora['trainable']:,} | "
              f"{lora['trainable'] / full['trainable']:.3f} |")
        print(f"| {label} | parameters held for the reference | {full['reference_params']:,} | "
              f"{lora['reference_params']:,} | – |")
        print(f"| {label} | peak RSS MB | {full['peak_mb']:.0f} | {lora['peak_mb']:.0f} | **{ratio:.2f}** |")
        print(f"| {label} | peak RSS − RSS after imports MB | {d_full:.0f} | {d_lora:.0f} | {d_lora / d_full:.2f} |")
        cpu_full = statistics.median(x["cpu_step_s"] for x in runs["full"])
        cpu_lora = statistics.median(x["cpu_step_s"] for x in runs["lora"])
        print(f"| {label} | CPU s/step (median of runs) | {cpu_full:.2f} | {cpu_lora:.2f} | {cpu_lora / cpu_full:.2f} |")
        verdicts.append(f"{label}: LoRA peak RSS / full {ratio:.2f}× (above the imports {d_lora / d_full:.2f}×); "
                        f"target ≤ 0.6×: {'met' if ratio <= 0.6 else 'NOT met'}")
    print()
    for v in verdicts:
        print(f"- {v}")


# ------------------------------------------------------------------------------------ driver
def _run(cmd: list[str], what: str, env: dict | None = None) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{what} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_worker(algo: str, side: str, steps: int, size: str = "tiny") -> dict:
    return _run([sys.executable, os.path.abspath(__file__), "--worker", algo, side, "--steps", str(steps),
                 "--size", size], f"{size}/{algo}/{side}")


def summarize(res: dict, warmup: int) -> dict:
    k = max(warmup - 1, 0)  # intervals before the end of step `warmup` are dropped
    gen = statistics.median(res["gen_s"][k:]) if res["gen_s"] else None
    return {**res, "median_step_s": statistics.median(res["step_s"][k:]), "median_gen_s": gen,
            "median_cpu_s": statistics.median(res["cpu_step_s"][k:]), "n_timed": len(res["step_s"][k:])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dpo-steps", type=int, default=30)
    ap.add_argument("--grpo-steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3, help="steps dropped from the timing")
    ap.add_argument("--repeats", type=int, default=4, help="back-to-back policylab/TRL pairs per benchmark")
    ap.add_argument("--only", choices=(*ALGOS, "memory"))
    ap.add_argument("--sizes", default="tiny,medium", help="model sizes to run: tiny, medium (comma-separated)")
    ap.add_argument("--medium-steps", type=int, default=4, help="timed steps per medium-model run (DPO and GRPO)")
    ap.add_argument("--medium-repeats", type=int, default=2, help="policylab/TRL pairs per medium-model benchmark")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                    help="LoRA vs full peak-RSS table (medium model)")
    ap.add_argument("--memory-configs", default="medium,large+ckpt",
                    help="memory table rows: medium, large (29.9M), xl (85.1M), +ckpt = gradient checkpointing on both sides")
    ap.add_argument("--malloc-mmap-threshold", type=int,
                    help="memory table: the trainers' malloc_mmap_threshold (bytes), the same on both sides")
    ap.add_argument("--glibc-tunables", metavar="T",
                    help="memory table: GLIBC_TUNABLES for both sides' processes (e.g. glibc.malloc.tcache_count=0)")
    ap.add_argument("--quick", action="store_true", help="10 DPO / 6 GRPO steps, 1 repeat")
    ap.add_argument("--processes", action="store_true",
                    help="instead: DPO tokens/s with 2 data-parallel processes vs 1 (benchmarks/llm_processes.py)")
    ap.add_argument("--worker", nargs=2, metavar=("ALGO", "SIDE"), help=argparse.SUPPRESS)
    ap.add_argument("--memory-worker", metavar="MODE", help=argparse.SUPPRESS)
    ap.add_argument("--size", default="tiny", help=argparse.SUPPRESS)
    ap.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mmap-threshold", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.steps, args.size)))
        return 0
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.steps, args.size, args.checkpointing, args.mmap_threshold)))
        return 0
    if args.processes:  # its own benchmark: policylab 1 vs 2 processes, no TRL
        from llm_processes import main as processes_main

        return processes_main(steps=6 if args.quick else 20, repeats=1 if args.quick else 3)
    if args.quick:
        args.dpo_steps, args.grpo_steps, args.repeats, args.warmup = 10, 6, 1, 2
        args.medium_steps, args.medium_repeats = 2, 1
    try:
        import trl
    except ImportError:
        print("benchmarks/llm.py needs TRL 1.16 as the peer: pip install -c constraints.txt -e '.[bench]'",
              file=sys.stderr)
        return 2

    sizes = [x.strip() for x in args.sizes.split(",") if x.strip()]
    runs: dict[tuple[str, str, str], list[dict]] = {}
    plan = []
    for size in sizes:
        algos = [a for a in SIZES[size]["algos"] if args.only in (None, a)]
        for algo in algos:
            if size == "tiny":
                steps = args.dpo_steps if algo.startswith("dpo") else args.grpo_steps
                plan.append((size, algo, steps, args.warmup, args.repeats))
            else:
                plan.append((size, algo, args.medium_steps, 1, args.medium_repeats))
    for size, algo, steps, warmup, repeats in plan:
        for r in range(repeats):
            for side in (["policylab", "trl"] if r % 2 == 0 else ["trl", "policylab"]):
                s = summarize(run_worker(algo, side, steps + warmup, size), warmup)
                print(f"# {size} {algo} {side} run {r + 1}: median {1e3 * s['median_step_s']:.2f} ms/step wall, "
                      f"{1e3 * s['median_cpu_s']:.2f} ms CPU, over {s['n_timed']} steps, "
                      f"peak RSS {s['rss_peak_mb']:.0f} MB", file=sys.stderr)
                runs.setdefault((size, algo, side), []).append(s)

    import peft
    import torch
    import transformers
    import trl

    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs "
          f"(load average {os.getloadavg()[0]:.1f} at the end), Python {platform.python_version()}, torch "
          f"{torch.__version__}, transformers {transformers.__version__}, TRL {trl.__version__}, PEFT "
          f"{peft.__version__}; 1 thread per side.")
    print("Values: wall = best (lowest) per-run median over the pairs; CPU = process CPU time per step, best run; "
          "'paired' = median over the pairs of the per-pair ratio.\n")
    print("| benchmark | side | metric | value | ratio policylab / TRL |")
    print("|---|---|---|---|---|")
    verdicts = []
    for size, algo, _, _, repeats in plan:
        spec = SIZES[size]
        ours_runs, peer_runs = runs[(size, algo, "policylab")], runs[(size, algo, "trl")]
        ours = min(ours_runs, key=lambda r: r["median_step_s"])
        peer = min(peer_runs, key=lambda r: r["median_step_s"])
        cpu_ours = min(r["median_cpu_s"] for r in ours_runs)
        cpu_peer = min(r["median_cpu_s"] for r in peer_runs)
        paired = sorted(o["median_step_s"] / p["median_step_s"] for o, p in zip(ours_runs, peer_runs))
        rows = []
        model = f"{size} {ours['params'] / 1e6:.2f}M"
        if algo.startswith("dpo"):
            tok_step = ours["tokens_per_step"]
            assert tok_step == peer["tokens_per_step"], "both sides must train on the same tokens"
            ref = "precomputed ref" if algo == "dpo-pre" else "ref model"
            label = f"DPO {model}, {ref} (batch {spec['dpo_batch']} pairs, {tok_step} tokens/step)"
            rows.append(("tokens/s (wall)", "{:,.0f}", tok_step / ours["median_step_s"], tok_step / peer["median_step_s"]))
            rows.append(("tokens/s (CPU time)", "{:,.0f}", tok_step / cpu_ours, tok_step / cpu_peer))
            inv = [1 / x for x in paired][::-1]
            speed, cpu_speed = statistics.median(inv), cpu_peer / cpu_ours
            verdicts.append(
                f"{size} DPO ({ref}) tokens/s, policylab / TRL: paired wall {speed:.2f}× (pairs {inv[0]:.2f}–"
                f"{inv[-1]:.2f}), CPU time {cpu_speed:.2f}×; target ≥ {spec['dpo_target']}×: "
                f"{'met' if min(speed, cpu_speed) >= spec['dpo_target'] else 'NOT met'}")
        else:
            new = f"exactly {spec['grpo_new']} new tokens, EOS suppressed" if spec.get("grpo_full_length") else (
                f"up to {spec['grpo_new']} new tokens")
            label = f"GRPO {model} (G {GRPO_G}, {new})"
            ratio, cpu_ratio = statistics.median(paired), cpu_ours / cpu_peer
            verdicts.append(
                f"{size} GRPO step time, policylab / TRL: paired wall {ratio:.2f}× (pairs {paired[0]:.2f}–"
                f"{paired[-1]:.2f}), CPU time {cpu_ratio:.2f}×; target ≤ {spec['grpo_target']}×: "
                f"{'met' if max(ratio, cpu_ratio) <= spec['grpo_target'] else 'NOT met'}")
        rows.append(("ms/step (wall)", "{:.2f}", 1e3 * ours["median_step_s"], 1e3 * peer["median_step_s"]))
        rows.append(("ms/step (CPU time)", "{:.2f}", 1e3 * cpu_ours, 1e3 * cpu_peer))
        if algo == "grpo":
            rows.append(("generate ms/step (wall)", "{:.2f}", 1e3 * ours["median_gen_s"], 1e3 * peer["median_gen_s"]))
            rows.append(("rest of step ms (wall)", "{:.2f}", 1e3 * (ours["median_step_s"] - ours["median_gen_s"]),
                         1e3 * (peer["median_step_s"] - peer["median_gen_s"])))
            rows.append(("mean completion length", "{:.1f}", ours["mean_completion_length"],
                         peer["mean_completion_length"]))
            rows.append(("ms/step per generated token (wall)", "{:.2f}",
                         1e3 * ours["median_step_s"] / (GRPO_G * ours["mean_completion_length"]),
                         1e3 * peer["median_step_s"] / (GRPO_G * peer["mean_completion_length"])))
        rows.append(("peak RSS MB", "{:.0f}", max(r["rss_peak_mb"] for r in ours_runs),
                     max(r["rss_peak_mb"] for r in peer_runs)))
        rows.append(("train ΔRSS MB", "{:.1f}", max(r["rss_peak_mb"] - r["rss_setup_mb"] for r in ours_runs),
                     max(r["rss_peak_mb"] - r["rss_setup_mb"] for r in peer_runs)))
        for metric, fmt, a, b in rows:
            r = f"{a / b:.2f}" if b else "–"
            print(f"| {label} | policylab | {metric} | {fmt.format(a)} | {r} |")
            print(f"| {label} | TRL 1.16 | {metric} | {fmt.format(b)} | 1.00 |")
    print()
    for v in verdicts:
        print(f"- {v}")
    if args.memory and "medium" in sizes and args.only in (None, "memory"):
        memory_table(args.medium_repeats, max(args.medium_steps, 2), args.memory_configs.split(","),
                     args.malloc_mmap_threshold, args.glibc_tunables)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
