"""DPO tokens/s with 2 data-parallel processes vs 1 (``python benchmarks/llm.py --processes``).

Same model, data and global batch on both sides: policylab's tiny Llama (``make_tiny_llama``, 95k
parameters) or, with ``--hidden 256 --layers 4``, a larger one; DPO with a frozen reference model,
BATCH pairs per optimizer step (the global batch), every sequence 32 tokens, fp32, CPU, one torch
thread per process. "1 process" is a plain ``python`` run; "2 processes" is ``torchrun
--nproc_per_node 2`` (gloo): each process takes BATCH/2 pairs, one all-reduce of the gradients per
step. The runs alternate (1, 2, 2, 1, ...); per run the median step time after the warm-up is taken
(interval between the ends of consecutive optimizer steps on the main process), and the table shows
the best run per side and the median of the per-pair ratios. This is the machine's number as
measured: on a 2-core machine shared with other jobs the second process competes with them.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BATCH = 32
PROMPT_CHARS, COMPLETION_CHARS = 20, 10  # + BOS + EOS = 32 tokens per sequence


def worker(out: str, steps: int, hidden: int, layers: int) -> None:
    import random

    import torch

    from policylab.llm import DPOConfig, DPOTrainer, make_char_tokenizer, make_tiny_llama

    torch.set_num_threads(1)
    rng = random.Random(0)
    chars = "abcdefghijklmnopqrstuvwxyz0123456789"

    def s(k):
        return "".join(rng.choice(chars) for _ in range(k))

    rows = [{"prompt": s(PROMPT_CHARS), "chosen": s(COMPLETION_CHARS), "rejected": s(COMPLETION_CHARS)}
            for _ in range(256)]
    tok = make_char_tokenizer()
    model = make_tiny_llama(len(tok), hidden=hidden, layers=layers, intermediate=2 * hidden, seed=0)
    cfg = DPOConfig(output_dir=out, max_steps=steps, batch_size=BATCH, learning_rate=1e-6, progress=False,
                    report_to="none", seed=0)
    trainer = DPOTrainer(model, tok, cfg, rows)
    ends, cpu_ends, inner = [], [], trainer._step

    def timed(step):
        result = inner(step)
        ends.append(time.perf_counter())
        cpu_ends.append(time.process_time())
        return result

    trainer._step = timed
    history = trainer.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"rank": trainer.rank, "step_s": [b - a for a, b in itertools.pairwise(ends)],
                      "cpu_step_s": [b - a for a, b in itertools.pairwise(cpu_ends)], "params": n_params,
                      "tokens_per_step": history[0]["num_tokens"], "processes": trainer.processes}))


def run(processes: int, steps: int, hidden: int, layers: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        args = [__file__, "--worker", tmp, str(steps), str(hidden), str(layers)]
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if processes == 2 else []
        out = subprocess.run([sys.executable, *launcher, *args], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{processes}-process run failed:\n{out.stderr[-3000:]}")
    ranks = sorted((json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")), key=lambda r: r["rank"])
    assert len(ranks) == processes
    return {**ranks[0], "cpu_by_rank": [r["cpu_step_s"] for r in ranks]}


def main(steps: int = 20, warmup: int = 3, repeats: int = 3, hidden: int = 64, layers: int = 2) -> int:
    import platform

    import accelerate
    import torch

    runs: dict[int, list[dict]] = {1: [], 2: []}
    for r in range(repeats):
        for p in ((1, 2) if r % 2 == 0 else (2, 1)):
            res = run(p, steps + warmup, hidden, layers)
            res["median_s"] = statistics.median(res["step_s"][warmup - 1:])
            res["cpu_s"] = sum(statistics.median(c[warmup - 1:]) for c in res["cpu_by_rank"])  # all processes
            runs[p].append(res)
            print(f"# {p} process(es), run {r + 1}: {1e3 * res['median_s']:.1f} ms/step wall, "
                  f"{1e3 * res['cpu_s']:.1f} ms CPU (all processes)", file=sys.stderr)
    tokens = runs[1][0]["tokens_per_step"]
    assert all(r["tokens_per_step"] == tokens for p in runs for r in runs[p]), "same global batch on both sides"
    best = {p: min(r["median_s"] for r in runs[p]) for p in runs}
    cpu = {p: min(r["cpu_s"] for r in runs[p]) for p in runs}
    paired = statistics.median(a["median_s"] / b["median_s"] for a, b in zip(runs[1], runs[2]))
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average "
          f"{os.getloadavg()[0]:.1f} at the end); Python {platform.python_version()}, torch {torch.__version__}, "
          f"accelerate {accelerate.__version__}; model {runs[1][0]['params']:,} parameters; DPO, global batch "
          f"{BATCH} pairs = {tokens:.0f} tokens/step; {repeats} interleaved runs per side, {steps} timed steps each.")
    print("Wall time on a loaded machine also measures the scheduler's share: 2 processes get 2 shares. "
          "CPU time is summed over the processes (the work a step costs).\n")
    print("| DPO, same global batch | ms/step (wall) | tokens/s (wall) | wall ratio vs 1 (paired) "
          "| ms CPU/step (all processes) | tokens per CPU-s |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| 1 process | {1e3 * best[1]:.1f} | {tokens / best[1]:,.0f} | 1.00 | {1e3 * cpu[1]:.1f} "
          f"| {tokens / cpu[1]:,.0f} |")
    print(f"| 2 processes (torchrun, gloo) | {1e3 * best[2]:.1f} | {tokens / best[2]:,.0f} | {paired:.2f}× "
          f"| {1e3 * cpu[2]:.1f} | {tokens / cpu[2]:,.0f} |")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        raise SystemExit(main())
