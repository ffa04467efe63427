"""Returns and advantages: pure functions over arrays (numpy in -> numpy out, torch in -> torch out).

Each function implements one equation of the lecture; the equation is in its docstring.
Time-indexed names follow rlax: ``r_t`` is the reward received after acting at step t,
``v_t`` the value estimate of s_t.
"""

from __future__ import annotations

import numpy as np


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def group_relative_advantages(rewards, group_size: int, scale: str = "none", eps: float = 1e-4):
    """Group-relative advantage of GRPO (lecture §7.2, Shao et al. 2024).

        Â_i = r_i − r̄,   r̄ = (1/G) Σ_j r_j              (scale="none", the lecture's form)
        Â_i = (r_i − r̄) / (std(r) + eps)                 (scale="std", DeepSeekMath)

    ``rewards`` is flat, shape (B,), with the G completions of each prompt contiguous, so
    B = n_prompts · G. std is the unbiased sample std (as TRL computes it). A group whose
    rewards are all equal gets zero advantage (never NaN): the numerator is exactly 0.
    Returns an array of shape (B,), same library and dtype as ``rewards``.
    """
    if scale not in ("none", "std"):
        raise ValueError(f"scale must be 'none' or 'std', got {scale!r}")
    if not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    n = rewards.shape[0]
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-d (B,), got shape {tuple(rewards.shape)}")
    if n % group_size != 0:
        raise ValueError(f"group_size={group_size} does not divide the batch of {n} rewards")
    if _is_torch(rewards):
        import torch

        if not torch.isfinite(rewards).all():
            raise ValueError("rewards contain NaN or inf")
        grouped = rewards.view(-1, group_size)  # (n_prompts, G)
        adv = grouped - grouped.mean(dim=1, keepdim=True)
        if scale == "std":
            std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(adv)
            adv = adv / (std + eps)
        return adv.reshape(-1)
    rewards = np.asarray(rewards)
    if not np.all(np.isfinite(rewards)):
        bad = int(np.flatnonzero(~np.isfinite(rewards))[0])
        raise ValueError(f"rewards[{bad}] is {rewards[bad]}: rewards must be finite")
    grouped = rewards.reshape(-1, group_size)  # (n_prompts, G)
    adv = grouped - grouped.mean(axis=1, keepdims=True)
    if scale == "std":
        std = grouped.std(axis=1, ddof=1, keepdims=True) if group_size > 1 else np.zeros_like(adv)
        adv = adv / (std + eps)
    return adv.reshape(-1)
