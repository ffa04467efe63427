"""Group Relative Policy Optimization (Shao et al. 2024; lecture §7.2) for a causal LM.

Per step, top to bottom:
  1. rollout   — batch_size / G prompts, G completions each, sampled in one batched ``generate``
                 (KV cache); completion mask up to and including the first EOS.
  2. rewards   — r_i = Σ_k w_k · reward_k(prompts, completions, **columns)_i; non-finite → error.
  3. advantage — Â_i = r_i − mean_group(r) (÷ std_group with scale_rewards="std"), via
                 :func:`policylab.returns.group_relative_advantages`.
  4. reference — log π_ref from a frozen in-memory copy, only when β ≠ 0.
  5. update    — μ = num_iterations AdamW steps on :func:`policylab.losses.grpo_loss`; with μ = 1
                 π_old is the detached current policy (TRL's shortcut), else stored at sampling time.
                 With μ = 1 in float32 on a Llama and unpadded prompts the sampler records its forward
                 values and log π_θ and its gradients come from them (:mod:`policylab.llm.replay`: the
                 same numbers up to rounding, without a second forward over the B × (P + C) tokens).
Loss types (``loss_type``; ℓ_{i,t} the clipped per-token term + β·k3, B completions, |y_i| tokens):
  lecture          Σ_{i,t} ℓ_{i,t} / B              — lecture §7.2's (1/G) Σ_i Σ_t, averaged over groups
  grpo (sequence)  (1/B) Σ_i (1/|y_i|) Σ_t ℓ_{i,t}  — DeepSeekMath
  bnpo, dapo       Σ_{i,t} ℓ_{i,t} / Σ_i |y_i|      — TRL 1.16's default (dapo), one process
  dr_grpo          Σ_{i,t} ℓ_{i,t} / (B · L_max)    — Dr. GRPO, L_max = max_completion_length
The defaults stay TRL's (dapo, scale_rewards "std"); the lecture's objective exactly is
``loss_type="lecture", scale_rewards="none"`` (Â_i = r_i − mean of the group).
Logs: loss, rewards/mean, rewards/std, rewards/<func>, kl, clip_ratio (+ /low, /high), ratio,
entropy, completion_length, frac_reward_zero_std, grad_norm, learning_rate.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from policylab.errors import DivergenceError, InputError
from policylab.llm.batching import completion_logprobs
from policylab.llm.data import (
    check_context_length,
    check_prompt_lengths,
    encode_prompt,
    is_conversation,
)
from policylab.llm.models import max_positions, reference_model
from policylab.llm.replay import DecodeTrace, trace_logprobs
from policylab.llm.sampling import generate
from policylab.llm.trainer import TrainConfig, Trainer
from policylab.losses import GRPO_NORMALIZATIONS, grpo_loss, normalize_per_token
from policylab.returns import group_relative_advantages

__all__ = ["GRPOConfig", "GRPOTrainer", "Rollout"]

RewardFunc = Callable[..., list]
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


@dataclass
class GRPOConfig(TrainConfig):
    """GRPO hyper-parameters (common fields in TrainConfig); defaults are TRL 1.16's, with the
    DeepSeekMath paper's choice noted where it differs."""

    output_dir: str = "runs/llm/grpo"  #: checkpoints and log.jsonl go here
    learning_rate: float = 1e-6  #: AdamW learning rate (TRL default; DeepSeekMath 1e-6)
    batch_size: int = 8  #: completions per step = prompts per step × num_generations
    num_generations: int = 8  #: G, completions sampled per prompt (TRL 8; DeepSeekMath 64)
    max_completion_length: int = 256  #: new tokens per completion (also L_max of "dr_grpo")
    temperature: float = 1.0  #: sampling temperature; log-probs use the same temperature (as TRL)
    top_p: float = 1.0  #: nucleus sampling threshold
    top_k: int = 0  #: top-k sampling (0: off)
    beta: float = 0.0  #: β of the k3 KL to π_ref (TRL 0: no reference model; DeepSeekMath 0.04)
    clip_eps: float = 0.2  #: ε (ε_low) of the clipped ratio (TRL epsilon)
    clip_eps_high: float | None = None  #: ε_high (DAPO clip-higher 0.28); None → clip_eps
    loss_type: str = "dapo"  #: reduction of ℓ_{i,t} (TRL default dapo); lecture §7.2 = "lecture" + scale_rewards none
    scale_rewards: str = "std"  #: "std" divides Â by the group std (TRL "group"), "none" (Dr. GRPO)
    num_iterations: int = 1  #: μ, updates per sampled batch (TRL 1)
    reward_funcs: list[str] = field(default_factory=lambda: ["correctness"])  #: names in policylab.llm.task.REWARDS (CLI)
    reward_weights: list[float] | None = None  #: one weight per reward function (default all 1)
    reward_model: str | None = None  #: reward-model folder (llm reward's output) scored as one more reward, weighted last
    use_hf_generate: bool = False  #: sample with model.generate instead of policylab's KV-cache decoder

    RANGES: ClassVar[dict] = {"num_generations": "[1, 65536]", "max_completion_length": "[1, 1048576]",
                              "temperature": "(0, inf)", "top_p": "(0, 1]", "beta": "[0, inf)", "clip_eps": "[0, 1]",
                              "clip_eps_high": "[0, inf)", "scale_rewards": ("std", "none"),
                              "loss_type": tuple(GRPO_NORMALIZATIONS), "num_iterations": "[1, 1000]"}

    GROUP_FIELD: ClassVar[str | None] = "num_generations"  #: a group of G completions stays on one process


@dataclass
class Rollout:
    """One sampled batch, B = prompts × G rows (the G completions of a prompt are contiguous)."""

    prompt_ids: torch.Tensor  #: (B, P) left-padded
    prompt_mask: torch.Tensor  #: (B, P)
    completion_ids: torch.Tensor  #: (B, C) right-padded
    completion_mask: torch.Tensor  #: (B, C) 1 up to and including the first EOS
    rewards: torch.Tensor | None = None  #: (B,) weighted sum of the reward functions
    advantages: torch.Tensor | None = None  #: (B,)
    old_logp: torch.Tensor | None = None  #: (B, C) only when num_iterations > 1
    ref_logp: torch.Tensor | None = None  #: (B, C) only when beta != 0
    trace: DecodeTrace | None = None  #: the decoder's forward values, when the update can reuse them
    stats: dict = field(default_factory=dict)


class GRPOTrainer(Trainer):
    """``GRPOTrainer(model, tokenizer, GRPOConfig(...), records_or_jsonl, reward_funcs=[f, ...]).train()``.

    ``reward_funcs``: callables ``f(prompts, completions, **columns) -> list[float]`` (columns are the
    JSONL fields other than "prompt", one value per completion); default: config.reward_funcs by name.
    With conversational prompts (lists of messages) each completion is passed as
    ``[{"role": "assistant", "content": text}]``, as TRL does.

    One step = ``rollout(rows)`` (sample + ``score``) then ``update(rollout)``; the phases are public so
    a step can be replayed on given completions: build ``Rollout(prompt_ids, prompt_mask,
    completion_ids, completion_mask)``, call ``score(ro, records, texts)`` or set ``ro.advantages``
    (and ``ro.ref_logp`` when β ≠ 0), then ``update(ro)``.

    TRL 1.16 GRPOConfig equivalents (single process): batch_size = per_device_train_batch_size =
    generation_batch_size (steps_per_generation = gradient_accumulation_steps = 1), num_generations,
    max_completion_length, temperature, top_p, top_k, beta, clip_eps = epsilon, clip_eps_high =
    epsilon_high, loss_type (same names), scale_rewards "std" = "group" / "none" = "none",
    num_iterations (here μ updates within one step, TRL spreads them over μ trainer steps),
    reward_weights, lr_scheduler "linear" = HF default; π_old = π_θ.detach() when μ = 1 like TRL.
    """

    config_class = GRPOConfig
    progress_keys = ("loss", "rewards/mean", "completion_length")
    data_format = "grpo"
    tracker_names: ClassVar[dict[str, str]] = {  # TRL 1.16's names; + rewards/<func> -> rewards/<func>/mean
        "rewards/mean": "reward", "rewards/std": "reward_std", "completion_length": "completions/mean_length",
        "clip_ratio": "clip_ratio/region_mean", "clip_ratio/low": "clip_ratio/low_mean",
        "clip_ratio/high": "clip_ratio/high_mean"}

    def __init__(self, model, tokenizer=None, config=None, train_data=None,
                 reward_funcs: RewardFunc | list[RewardFunc] | None = None):
        config = config or GRPOConfig()
        if reward_funcs is None:
            from policylab.llm.task import REWARDS

            unknown = [n for n in config.reward_funcs if n not in REWARDS]
            if unknown:
                raise InputError(f"unknown reward function {unknown[0]!r}; known: {sorted(REWARDS)}")
            reward_funcs = [REWARDS[n] for n in config.reward_funcs]
        self.reward_funcs = list(reward_funcs) if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
        names = [f.__name__ for f in self.reward_funcs] + (["reward_model"] if config.reward_model is not None else [])
        weights = config.reward_weights or [1.0] * len(names)
        if not names or len(weights) != len(names):
            raise InputError(f"{len(weights)} reward_weights for {len(names)} reward functions")
        self.reward_weights = torch.tensor(weights, dtype=torch.float32)
        self.tracker_names = {**self.tracker_names, **{f"rewards/{n}": f"rewards/{n}/mean" for n in names}}
        super().__init__(model, tokenizer, config, train_data)  # rows checked, then the policy loads, then _prepare

    def _prepare(self):
        labels = self.labels
        self.prompt_ids = [encode_prompt(self.tokenizer, r["prompt"]) for r in self.records]
        check_prompt_lengths(self.prompt_ids, labels, self.config.max_prompt_length)
        longest = max(range(len(self.prompt_ids)), key=lambda i: len(self.prompt_ids[i]))
        check_context_length(len(self.prompt_ids[longest]) + self.config.max_completion_length,
                             max_positions(self.model), labels[longest], "prompt + max_completion_length",
                             "lower max_completion_length or shorten the prompt")
        for f in self.reward_funcs:  # each reward's named columns must exist in every row
            for name, p in inspect.signature(f).parameters.items():  # (for an object: its __call__)
                if name in ("prompts", "completions") or p.kind is not p.POSITIONAL_OR_KEYWORD or p.default is not p.empty:
                    continue
                for rec, where in zip(self.records, labels):
                    if name not in rec:
                        raise InputError(f"{where}: missing column {name!r} needed by reward {f.__name__}")
        if self.config.reward_model is not None:  # loaded after every row is checked
            from policylab.llm.reward import RewardModelReward

            self.reward_funcs.append(RewardModelReward(self.config.reward_model))
        self.ref_model = reference_model(self.model) if self.config.beta != 0.0 else None
        self._spare_trace = None  # a released DecodeTrace's buffers, reused by the next rollout

    # ------------------------------------------------------------------ 1-4: rollout
    def rollout(self, rows: list[int]) -> Rollout:
        """Sample G completions for each prompt row, score them, compute advantages (and π_old, π_ref)."""
        cfg, G = self.config, self.config.num_generations
        prompt_ids = [self.prompt_ids[i] for i in rows for _ in range(G)]
        # μ = 1 in float32 without checkpointing: the update differentiates the sampled tokens under the
        # sampling weights, so the decoder's forward values stand in for a training forward
        record = cfg.num_iterations == 1 and cfg.mixed_precision == "no" and not cfg.gradient_checkpointing
        if record and self._spare_trace is not None:  # the last update's buffers, written over
            record, self._spare_trace = self._spare_trace, None
        p_ids, p_mask, c_ids, c_mask, texts, *trace = generate(
            self.model, self.tokenizer, prompt_ids, cfg.max_completion_length, True, cfg.temperature, cfg.top_p,
            cfg.top_k, cfg.use_hf_generate, record=record,
        )  # (B, P), (B, P), (B, C), (B, C), B strings[, trace or None]
        p_ids, p_mask, c_ids, c_mask = self.to_device(p_ids, p_mask, c_ids, c_mask)
        ro = Rollout(p_ids, p_mask, c_ids, c_mask, trace=trace[0] if trace else None)
        self.score(ro, [self.records[i] for i in rows for _ in range(G)], texts)
        with torch.no_grad(), self.autocast():
            if cfg.num_iterations > 1:
                ro.old_logp = completion_logprobs(self.model, p_ids, p_mask, c_ids, c_mask, cfg.temperature)
            if self.ref_model is not None:
                ro.ref_logp = completion_logprobs(self.ref_model, p_ids, p_mask, c_ids, c_mask, cfg.temperature)
        return ro

    def score(self, ro: Rollout, records: list[dict], completions: list[str]) -> Rollout:
        """Fill ``ro.rewards`` (weighted sum) and ``ro.advantages``. A reward that is not a real number
        raises InputError, one that is not finite in float32 DivergenceError, each naming the function."""
        prompts = [r["prompt"] for r in records]
        if is_conversation(prompts[0]):  # conversational rows: completions as assistant messages (TRL's)
            completions = [[{"role": "assistant", "content": c}] if isinstance(c, str) else c for c in completions]
        columns = {k: [r.get(k) for r in records] for k in records[0] if k != "prompt"}
        per_func = torch.zeros(len(completions), len(self.reward_funcs))  # (B, K)
        for k, f in enumerate(self.reward_funcs):
            values = list(f(prompts=prompts, completions=completions, **columns))
            if len(values) != len(completions):
                raise InputError(f"reward {f.__name__} returned {len(values)} values for {len(completions)} completions")
            for i, v in enumerate(values):
                v = values[i] = v.item() if torch.is_tensor(v) and v.numel() == 1 else v
                where = f"reward {f.__name__} returned {v!r} for completion {i} of prompt {prompts[i]!r}"
                if not isinstance(v, numbers.Real):
                    raise InputError(f"{where}: rewards must be numbers, not {type(v).__name__}")
                if not math.isfinite(float(v)) or abs(float(v)) > FLOAT32_MAX:
                    raise DivergenceError(f"step {self.step + 1}: {where}: rewards must be finite float32 numbers")
            per_func[:, k] = torch.tensor([float(v) for v in values])
        ro.rewards = per_func @ self.reward_weights  # (B,)
        if not bool(torch.isfinite(ro.rewards).all()):
            raise DivergenceError(f"step {self.step + 1}: the weighted sum of rewards overflows float32")
        G = self.config.num_generations
        ro.advantages = group_relative_advantages(ro.rewards, G, scale=self.config.scale_rewards).to(self.device)  # (B,)
        # logged over the whole global batch: every process's completions
        all_funcs = self.gather(torch.cat([per_func, ro.completion_mask.sum(1, keepdim=True).float().cpu()], 1))
        rewards, lengths = all_funcs[:, :-1] @ self.reward_weights, all_funcs[:, -1]  # (P·B,)
        for k, f in enumerate(self.reward_funcs):
            ro.stats[f"rewards/{f.__name__}"] = all_funcs[:, k].mean().item()
        ro.stats.update({
            "rewards/mean": rewards.mean().item(),
            "rewards/std": rewards.std().item() if len(rewards) > 1 else 0.0,
            "frac_reward_zero_std": (rewards.view(-1, G).std(1) == 0).float().mean().item() if G > 1 else 1.0,
            "completion_length": lengths.mean().item(),
        })
        return ro

    # ------------------------------------------------------------------ 5: update
    def update(self, ro: Rollout) -> dict:
        """μ AdamW steps on grpo_loss for a scored rollout (this process's completions, in micro-batches
        of whole groups); returns the last step's stats over the global batch."""
        cfg, mask = self.config, ro.completion_mask
        B = mask.shape[0]
        token_units = GRPO_NORMALIZATIONS[cfg.loss_type] is normalize_per_token  # else per completion
        units = mask.sum(1).double() if token_units else torch.ones(B, dtype=torch.float64, device=mask.device)
        total = float(self.all_sum(units.sum().reshape(1).cpu())[0])  # (the global batch's tokens or completions)
        for _ in range(cfg.num_iterations):
            replay = ro.trace is not None and ro.trace.valid_for(self.model)
            self._zero_grad()
            parts = []
            for i in range(0, B, self.micro_batch):
                sl = slice(i, i + self.micro_batch)
                with self.autocast():
                    if replay:  # gradients from the decoder's forward values (policylab.llm.replay)
                        logp, entropy = trace_logprobs(self.model, ro.trace, sl, ro.prompt_ids[sl], ro.completion_ids[sl],
                                                       mask[sl], cfg.temperature, with_entropy=True)
                    else:
                        logp, entropy = completion_logprobs(
                            self.model, ro.prompt_ids[sl], ro.prompt_mask[sl], ro.completion_ids[sl], mask[sl],
                            cfg.temperature, with_entropy=True,
                        )  # (b, C), (b, C)
                    loss, stats = grpo_loss(
                        logp, _rows(ro.old_logp, sl), _rows(ro.ref_logp, sl), ro.advantages[sl], mask[sl],
                        clip_eps=cfg.clip_eps, beta=cfg.beta, normalization=cfg.loss_type,
                        clip_eps_high=cfg.clip_eps_high, max_len=cfg.max_completion_length,
                    )
                u = float(units[sl].sum())
                self._backward(loss, u / total)
                entropy = ((entropy * mask[sl]).sum() / mask[sl].sum().clamp(min=1)).item()
                parts.append((u, {"loss": loss.item(), "entropy": entropy, **{k: v.item() for k, v in stats.items()}}))
            grad_norm = self._optimizer_step()
        if ro.trace is not None and ro.trace.versions is not None:  # used up: its buffers serve the next rollout
            self._spare_trace = ro.trace.release()
        return {**self.reduce_stats(parts), "grad_norm": grad_norm}

    def _step(self, step: int) -> dict:
        n_prompts = self.config.batch_size // self.config.num_generations
        ro = self.rollout(self.shard(self.batch_indices(step, n_prompts)))  # this process's prompts, G each
        return {**ro.stats, **self.update(ro)}


def _rows(t: torch.Tensor | None, sl: slice) -> torch.Tensor | None:
    return None if t is None else t[sl]
