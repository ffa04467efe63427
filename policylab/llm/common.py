"""What SFT, DPO and GRPO share: config base, model/tokenizer resolution, batching, log-probs of
completions, the training loop with logging, and atomic resumable checkpoints.

Each algorithm file (``sft.py``, ``dpo.py``, ``grpo.py``) subclasses :class:`Trainer` once and
implements ``_prepare()`` (validate data before any work) and ``_step(step) -> dict`` (one update).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from policylab.llm.fastdecode import LlamaDecoder, supports_fast_decode
from policylab.llm.logprobs import sequence_logprobs

__all__ = [
    "TrainConfig",
    "Trainer",
    "completion_logprobs",
    "frozen_copy",
    "generate",
    "join_right_padded",
    "latest_checkpoint",
    "load_checkpoint",
    "pad",
    "resolve_model",
    "sample_next_token",
    "save_checkpoint",
]


@dataclass
class TrainConfig:
    """Fields every trainer shares (the algorithm configs add theirs)."""

    model: str = "tiny"  #: local Hugging Face folder, or "tiny" for policylab.llm.tiny's model
    train_file: str | None = None  #: JSONL training data (or pass records to the trainer)
    output_dir: str = "runs/llm"  #: checkpoints and log.jsonl go here
    seed: int = 0  #: seeds data order, sampling and the tiny model
    max_steps: int = 100  #: optimizer steps
    batch_size: int = 8  #: sequences per step (TRL per_device_train_batch_size)
    learning_rate: float = 1e-6  #: AdamW learning rate
    weight_decay: float = 0.0  #: AdamW weight decay
    adam_betas: tuple[float, float] = (0.9, 0.999)  #: AdamW betas
    max_grad_norm: float = 1.0  #: gradient-norm clip (0 disables)
    lr_scheduler: str = "constant"  #: "constant" or "linear" decay to 0 (TRL/HF Trainer default: linear)
    warmup_steps: int = 0  #: linear warm-up steps before the schedule
    max_prompt_length: int = 512  #: a longer tokenized prompt is an error (row named)
    logging_steps: int = 1  #: append to log.jsonl every N steps
    save_steps: int = 0  #: checkpoint every N steps (0: only at the end)
    save_total_limit: int = 2  #: keep at most this many checkpoints (0: keep all)
    progress: bool = True  #: tqdm progress bar

    def __post_init__(self):
        self.adam_betas = tuple(self.adam_betas)
        if self.lr_scheduler not in ("constant", "linear"):
            raise ValueError(f"lr_scheduler must be 'constant' or 'linear', got {self.lr_scheduler!r}")
        for name in ("max_steps", "batch_size", "max_prompt_length"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def resolve_model(model, tokenizer=None, seed: int = 0):
    """(model, tokenizer) from an in-memory model, a local folder path, or "tiny". Never downloads."""
    if isinstance(model, (str, os.PathLike)):
        if str(model) == "tiny":
            from policylab.llm.tiny import make_char_tokenizer, make_tiny_llama

            tokenizer = tokenizer or make_char_tokenizer()
            model = make_tiny_llama(len(tokenizer), seed=seed)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            folder = Path(model)
            if not folder.is_dir():
                raise FileNotFoundError(f"model folder {str(model)!r} not found (give a local folder or 'tiny')")
            if not (folder / "config.json").exists() and latest_checkpoint(folder) is not None:
                folder = latest_checkpoint(folder)  # a run folder: its latest checkpoint
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(folder, local_files_only=True)
            bar_was_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
            finally:
                if bar_was_on:
                    hf_logging.enable_progress_bar()
    if tokenizer is None:
        raise ValueError("an in-memory model needs its tokenizer")
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token (e.g. to eos_token) first")
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token: completions could never end")
    return model, tokenizer


def frozen_copy(model):
    """Reference model: an in-memory deep copy in eval mode with requires_grad off."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def pad(seqs: list[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists to (N, max_len) ids and a 0/1 mask, on the "left" or the "right"."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def join_right_padded(prompts: list[list[int]], completions: list[list[int]], pad_id: int):
    """[prompt | completion] rows right-padded: (input_ids, attention_mask, completion_mask), each (N, T)."""
    ids, attention = pad([p + c for p, c in zip(prompts, completions)], pad_id, "right")
    completion_mask = torch.zeros_like(attention)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        completion_mask[i, len(p) : len(p) + len(c)] = 1
    return ids, attention, completion_mask


def completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature=1.0):
    """(B, C) log π(completion tokens) for left-padded prompts (B, P) and right-padded completions (B, C).

    One forward over [prompt | completion] keeping only the last C + 1 logits (``logits_to_keep``),
    then :func:`sequence_logprobs`; entries where ``completion_mask`` is 0 are exactly 0. This is
    TRL GRPO's ``_get_per_token_logps`` (it also divides the logits by the sampling temperature).
    """
    C = completion_ids.shape[1]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P + C)
    attention = torch.cat([prompt_mask, completion_mask], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention, logits_to_keep=C + 1, use_cache=False).logits
    full_mask = torch.cat([torch.zeros_like(prompt_mask), completion_mask], dim=1)
    return sequence_logprobs(logits, input_ids, full_mask, temperature=temperature)[:, -C:]  # (B, C)


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0):
    """Sample one token per row from (B, V) logits: softmax(z / T) restricted to the top-k tokens and
    to the smallest set with cumulative probability ≥ top_p (the nucleus). temperature 0 → argmax."""
    if temperature == 0:
        return logits.argmax(-1)
    z = logits.float() / temperature
    if top_k and top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[:, -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p < 1.0:
        sorted_z, order = torch.sort(z, descending=True, dim=-1)
        probs = torch.softmax(sorted_z, -1)
        drop = probs.cumsum(-1) - probs > top_p  # tokens entirely past the nucleus
        z = z.scatter(-1, order, sorted_z.masked_fill(drop, float("-inf")))
    return torch.multinomial(torch.softmax(z, -1), 1).squeeze(-1)


def _stepper(model, p_ids: torch.Tensor, p_mask: torch.Tensor, max_new_tokens: int):
    """``step(new_ids (B, T)) -> next-token logits (B, V)`` with a KV cache: the first call is the
    prefill of the prompts, each later call appends one token per row. Uses the lean Llama decoder
    when the model is a plain Llama, else the model's forward with a ``DynamicCache``. Positions follow
    HF generate (cumsum of the attention mask − 1); no mask at all when no row is padded."""
    B, P = p_ids.shape
    ragged = not bool(p_mask.all())
    state = {
        "mask": p_mask if ragged else None,
        "pos": (p_mask.cumsum(1) - 1).clamp(min=0) if ragged else torch.arange(P).expand(B, P),
        "first": True,
    }
    fast = supports_fast_decode(model)
    if fast:
        decoder = LlamaDecoder(model, B, P + max_new_tokens)
    else:
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def step(ids: torch.Tensor) -> torch.Tensor:
        if not state["first"]:
            state["pos"] = state["pos"][:, -1:] + 1
            if ragged:
                state["mask"] = torch.cat([state["mask"], torch.ones((B, 1), dtype=p_mask.dtype)], dim=1)
        state["first"] = False
        if fast:
            return decoder(ids, state["pos"], state["mask"])
        out = model(input_ids=ids, attention_mask=state["mask"], position_ids=state["pos"] if ragged else None,
                    use_cache=True, logits_to_keep=1, **{key: cache})
        return out.logits[:, -1]

    return step


@torch.no_grad()
def generate(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, do_sample: bool = True,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, use_hf_generate: bool = False):
    """Batched sampling with the KV cache. Returns (prompt_ids (B, P) left-padded, prompt_mask,
    completion_ids (B, C), completion_mask (B, C), texts): the completion mask covers the tokens up to
    and including the first EOS (as TRL), and texts are decoded without special tokens.

    The default decoder is a plain sampling loop that stops when every row has emitted EOS, over
    :func:`_stepper` (a lean static-cache decoder for Llama models, the model's own forward with a
    ``DynamicCache`` otherwise); ``use_hf_generate=True`` calls ``model.generate`` instead (same
    distribution, different random stream)."""
    p_ids, p_mask = pad(prompt_ids, tokenizer.pad_token_id, "left")  # (B, P)
    eos, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    if use_hf_generate:
        kw = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k} if do_sample else {
            "do_sample": False}
        out = model.generate(input_ids=p_ids, attention_mask=p_mask, max_new_tokens=max_new_tokens,
                             pad_token_id=pad_id, eos_token_id=eos, use_cache=True, **kw)
        c_ids = out[:, p_ids.shape[1]:]  # (B, C)
    else:
        step = _stepper(model, p_ids, p_mask, max_new_tokens)
        logits = step(p_ids)  # (B, V): prefill
        B = p_ids.shape[0]
        c_ids = torch.full((B, max_new_tokens), pad_id, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        for t in range(max_new_tokens):
            nxt = sample_next_token(logits, temperature if do_sample else 0.0, top_p, top_k)  # (B,)
            c_ids[:, t] = nxt.masked_fill(done, pad_id)
            done |= nxt == eos
            if bool(done.all()) or t == max_new_tokens - 1:
                c_ids = c_ids[:, : t + 1]
                break
            logits = step(nxt[:, None])
    model.train(was_training)
    is_eos = c_ids == eos
    first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], c_ids.shape[1], dtype=torch.long))
    c_mask = (torch.arange(c_ids.shape[1])[None, :] <= first_eos[:, None]).long()  # (B, C)
    c_ids = c_ids.masked_fill(c_mask == 0, pad_id)
    texts = tokenizer.batch_decode(c_ids, skip_special_tokens=True)
    return p_ids, p_mask, c_ids, c_mask, texts


# ------------------------------------------------------------------------------ checkpoints


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def save_checkpoint(directory, model, tokenizer, optimizer, step: int, config, extra: dict | None = None) -> Path:
    """Write ``directory`` atomically: weights (save_pretrained, safetensors), tokenizer,
    optimizer tensors + RNG states (safetensors), and trainer_state.json (step, config, RNG, extra).
    Written into a temporary sibling folder that is renamed into place at the end."""
    final = Path(directory)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # our own tqdm bar is the only one
    try:
        model.save_pretrained(tmp)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(tmp)
    opt = optimizer.state_dict()
    tensors = {"rng.torch": torch.get_rng_state()}
    for idx, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "trainer_state.safetensors"))
    np_state = np.random.get_state()
    state = {
        "step": step,
        "config": dataclasses.asdict(config),
        "param_groups": opt["param_groups"],
        "rng_python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        **(extra or {}),
    }
    _atomic_json(tmp / "trainer_state.json", state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def load_checkpoint(directory, model, optimizer) -> dict:
    """Restore weights, optimizer and RNG states from :func:`save_checkpoint`; returns the state dict."""
    directory = Path(directory)
    state = json.loads((directory / "trainer_state.json").read_text())
    weights = load_file(str(directory / "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = getattr(model, "_tied_weights_keys", None) or {}  # save_pretrained drops tied copies
    missing = [k for k in missing if k not in tied]
    if unexpected or missing:
        raise ValueError(f"checkpoint {directory} does not match the model: missing {missing}, unexpected {unexpected}")
    tensors = load_file(str(directory / "trainer_state.safetensors"))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    p = state["rng_python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    n = state["rng_numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    return state


def latest_checkpoint(output_dir) -> Path | None:
    """The complete ``checkpoint-<step>`` folder with the highest step, or None."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)


# ------------------------------------------------------------------------------- the loop


class Trainer:
    """Loop, logging, checkpoints. Subclasses set ``self.records`` in ``_prepare`` and define ``_step``."""

    def __init__(self, model, tokenizer=None, config: TrainConfig | None = None, train_data=None):
        self.config = config = config or self.config_class()
        torch.manual_seed(config.seed)
        self.model, self.tokenizer = resolve_model(model, tokenizer, seed=config.seed)
        self.model.train()
        if train_data is None and config.train_file is None:
            raise ValueError("no training data: give train_data or config.train_file")
        self.train_data = config.train_file if train_data is None else train_data
        self._prepare()  # validates data and builds reference pieces: all errors happen here
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay,
            fused=all(p.device.type in ("cpu", "cuda") for p in params),  # one kernel for all tensors
        )
        self.step = 0
        self.history: list[dict] = []

    def batch_indices(self, step: int, n: int | None = None) -> list[int]:
        """Rows of step ``step``: a seeded permutation per epoch, so a resumed run sees the same order."""
        size = len(self.records)
        n = self.config.batch_size if n is None else n
        cache = self.__dict__.setdefault("_perms", {})
        out = []
        for pos in range(step * n, (step + 1) * n):
            epoch, i = divmod(pos, size)
            if epoch not in cache:
                cache[epoch] = np.random.default_rng([self.config.seed, epoch]).permutation(size)
            out.append(int(cache[epoch][i]))
        return out

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based), as HF's get_{constant,linear}_schedule_with_warmup."""
        cfg = self.config
        if step < cfg.warmup_steps:
            return cfg.learning_rate * step / max(1, cfg.warmup_steps)
        if cfg.lr_scheduler == "linear":
            return cfg.learning_rate * max(0.0, (cfg.max_steps - step) / max(1, cfg.max_steps - cfg.warmup_steps))
        return cfg.learning_rate

    def _update(self, loss: torch.Tensor) -> float:
        """Backward, clip, AdamW step at lr_at(self.step); returns the pre-clip gradient norm."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        return float(norm)

    def save(self, directory=None) -> Path:
        directory = directory or Path(self.config.output_dir) / f"checkpoint-{self.step}"
        path = save_checkpoint(directory, self.model, self.tokenizer, self.optimizer, self.step, self.config)
        limit = self.config.save_total_limit
        if limit:
            ckpts = sorted(Path(self.config.output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            for old in ckpts[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def resume(self, checkpoint="latest") -> int:
        """Load a checkpoint folder (or the latest in output_dir); training continues from its step."""
        if checkpoint == "latest":
            checkpoint = latest_checkpoint(self.config.output_dir)
            if checkpoint is None:
                return self.step
        state = load_checkpoint(checkpoint, self.model, self.optimizer)
        self.step = int(state["step"])
        return self.step

    def train(self, resume_from=None) -> list[dict]:
        """Run until ``config.max_steps``; returns the logged history (also in output_dir/log.jsonl)."""
        from tqdm.auto import tqdm

        cfg = self.config
        if resume_from is not None:
            self.resume(resume_from)
        out = Path(cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not cfg.progress, desc=type(self).__name__)
        with (out / "log.jsonl").open("a") as log:
            while self.step < cfg.max_steps:
                lr = self.lr_at(self.step)
                stats = self._step(self.step)
                self.step += 1
                stats = {"step": self.step, "learning_rate": lr, **{k: float(v) for k, v in stats.items()}}
                self.history.append(stats)
                if self.step % cfg.logging_steps == 0:
                    log.write(json.dumps(stats) + "\n")
                    log.flush()
                    bar.set_postfix({k: f"{stats[k]:.3g}" for k in self.progress_keys if k in stats})
                bar.update(1)
                if cfg.save_steps and self.step % cfg.save_steps == 0 and self.step < cfg.max_steps:
                    self.save()
        bar.close()
        self.save()
        return self.history
