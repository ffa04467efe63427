"""GRPO and DPO losses for language models (lecture §7.2–7.3): pure torch functions.

Conventions shared by every function here:

- Per-token tensors are (B, T): one row per completion, one column per token position.
  ``mask`` is 1 (or True) on the completion tokens that count and 0 on prompt/padding;
  the positions need not be contiguous, only ``logp``, ``old_logp``, ``ref_logp`` and
  ``mask`` must be aligned with each other (e.g. the output of
  :func:`policylab.llm.sequence_logprobs`, or TRL's (B, C) completion-only log-probs).
- Sequence log-probs for DPO are (B,): Σ_t log π(y_t | x, y_<t) over the completion tokens.
- Every loss returns a scalar to *minimize*.

TRL 1.16 correspondence (``trl/trainer/grpo_trainer.py::_compute_loss``,
``trl/trainer/dpo_trainer.py::_compute_loss``) is stated in each docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from policylab.errors import InputError
from policylab.losses.kl import kl_k3

__all__ = [
    "GRPO_NORMALIZATIONS",
    "DPOOutput",
    "bradley_terry_loss",
    "dpo_loss",
    "grpo_loss",
    "implicit_reward",
    "ipo_loss",
    "kl_regularized_objective",
    "kl_regularized_optimum",
    "normalize_constant",
    "normalize_per_sequence",
    "normalize_per_token",
    "normalize_sum_per_completion",
]


# ---------------------------------------------------------------------------------------------
# GRPO: token-level clipped surrogate + k3 KL, reduced by a named normalization
# ---------------------------------------------------------------------------------------------


def normalize_per_sequence(per_token: torch.Tensor, mask: torch.Tensor, max_len: int | None = None):
    """Per-sequence mean, then batch mean (DeepSeekMath GRPO; TRL loss_type="grpo"):

        L = (1/B) Σ_i (1/|y_i|) Σ_t ℓ_{i,t}        (|y_i| = Σ_t mask_{i,t}, clamped to ≥ 1)

    Short completions weigh more per token than long ones (the length bias Dr. GRPO removes).
    """
    return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


def normalize_per_token(per_token: torch.Tensor, mask: torch.Tensor, max_len: int | None = None):
    """Sum over all completion tokens / number of completion tokens (TRL loss_type="bnpo"; also
    TRL "dapo" in a single process without gradient accumulation, TRL 1.16's default):

        L = Σ_{i,t} ℓ_{i,t} / Σ_{i,t} mask_{i,t}        (denominator clamped to ≥ 1)
    """
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def normalize_constant(per_token: torch.Tensor, mask: torch.Tensor, max_len: int | None = None):
    """Sum / (B · L_max) with a constant L_max (Dr. GRPO, Liu et al. 2025; TRL loss_type="dr_grpo"):

        L = Σ_{i,t} ℓ_{i,t} / (B · L_max)

    ``max_len`` is the *configured* maximum completion length (TRL's ``max_completion_length``),
    not the padded width of this batch; when None the padded width ``mask.shape[1]`` is used.
    """
    denom = per_token.shape[0] * (mask.shape[-1] if max_len is None else int(max_len))
    return (per_token * mask).sum() / denom


def normalize_sum_per_completion(per_token: torch.Tensor, mask: torch.Tensor, max_len: int | None = None):
    """Sum over each completion's tokens, mean over completions — GRPO exactly as lecture §7.2 writes it:

        L = Ê_groups[ (1/G) Σ_{i=1}^{G} Σ_t ℓ_{i,t} ] = (1/B) Σ_{i,t} ℓ_{i,t}      (B = groups × G rows)

    No length normalization: a long completion contributes every one of its tokens. With
    ``scale_rewards="none"`` (Â_i = r_i − mean_group r) this is the lecture's L^GRPO (+ β·KL summed
    over the completion's tokens, the sequence-level KL estimate). Not one of TRL's loss types.
    """
    return (per_token * mask).sum() / per_token.shape[0]


#: Named reductions of the per-token GRPO loss; keys include TRL's ``loss_type`` names and
#: "lecture" (:func:`normalize_sum_per_completion`).
GRPO_NORMALIZATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "lecture": normalize_sum_per_completion,
    "sequence": normalize_per_sequence,
    "grpo": normalize_per_sequence,
    "token": normalize_per_token,
    "bnpo": normalize_per_token,
    "dapo": normalize_per_token,
    "constant": normalize_constant,
    "dr_grpo": normalize_constant,
}


def _check_same_shape(ref: torch.Tensor, **others) -> None:
    for name, t in others.items():
        if t is not None and tuple(t.shape) != tuple(ref.shape):
            raise InputError(f"{name} has shape {tuple(t.shape)}, expected {tuple(ref.shape)} like logp")


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    beta: float = 0.0,
    normalization: str = "sequence",
    clip_eps_high: float | None = None,
    max_len: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO loss (Shao et al. 2024, lecture §7.2), token-level clipped ratio with optional k3 KL:

        ρ_{i,t} = exp(log π_θ(y_{i,t}) − log π_old(y_{i,t}))
        ℓ_{i,t} = −min(ρ_{i,t} Â_i, clip(ρ_{i,t}, 1−ε_low, 1+ε_high) Â_i) + β·k3(π_θ ‖ π_ref)_{i,t}
        k3 = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1
        L  = normalization(ℓ, mask)

    Args:
        logp: (B, T) log π_θ of the sampled tokens, with grad.
        old_logp: (B, T) log π_old at sampling time, or None. None means one update per batch
            (TRL num_iterations == 1): π_old = π_θ.detach(), so ρ ≡ 1 in value but ∇ρ = ∇log π_θ,
            exactly TRL's ``per_token_logps.detach()`` substitution.
        ref_logp: (B, T) log π_ref, needed only when beta != 0 (TRL ``ref_per_token_logps``).
        advantages: (B,) one advantage per completion (broadcast over tokens) or (B, T).
            Advantages are taken as given: scale them beforehand with
            ``policylab.returns.group_relative_advantages(r, G, scale="std")`` to match TRL's
            default ``scale_rewards="group"`` (TRL: (r − mean)/(std + 1e-4), unbiased std), or
            ``scale="none"`` for TRL ``scale_rewards="none"``.
        mask: (B, T) 1 on completion tokens (TRL ``completion_mask``).
        clip_eps: ε_low (TRL ``epsilon``, default 0.2).
        beta: KL coefficient β (TRL ``beta``, default 0.0: no reference model).
        normalization: key of :data:`GRPO_NORMALIZATIONS`: "sequence"/"grpo" (per-sequence mean
            then batch mean), "token"/"bnpo"/"dapo" (sum / number of tokens), "constant"/"dr_grpo"
            (sum / (B · max_len)), "lecture" (sum over each completion's tokens / B, lecture §7.2).
        clip_eps_high: ε_high (TRL ``epsilon_high``; DAPO's clip-higher uses 0.28); None → clip_eps.
        max_len: L_max for the "constant" normalization (TRL ``max_completion_length``).

    Returns:
        (loss, stats): loss is a scalar with grad. stats holds detached scalars computed the way
        TRL logs them (masked means over all tokens): ``kl`` (mean k3, 0 when beta == 0),
        ``clip_ratio`` (TRL clip_ratio/region_mean: fraction of tokens where the clip is active,
        i.e. ρ < 1−ε_low with Â < 0 or ρ > 1+ε_high with Â > 0), ``clip_ratio/low``,
        ``clip_ratio/high``, ``ratio`` (mean ρ).
    """
    if logp.ndim != 2:
        raise InputError(f"logp must be (B, T), got shape {tuple(logp.shape)}")
    _check_same_shape(logp, old_logp=old_logp, ref_logp=ref_logp, mask=mask)
    if advantages.ndim == 1:
        if advantages.shape[0] != logp.shape[0]:
            raise InputError(f"advantages has {advantages.shape[0]} rows, logp has {logp.shape[0]}")
        advantages = advantages.unsqueeze(1)  # (B, 1)
    else:
        _check_same_shape(logp, advantages=advantages)
    if normalization not in GRPO_NORMALIZATIONS:
        raise InputError(f"normalization must be one of {sorted(GRPO_NORMALIZATIONS)}, got {normalization!r}")
    if beta != 0.0 and ref_logp is None:
        raise InputError("beta != 0 needs ref_logp (log-probs of the reference model)")
    eps_low, eps_high = clip_eps, (clip_eps if clip_eps_high is None else clip_eps_high)
    mask = mask.to(logp.dtype)

    old_logp = logp.detach() if old_logp is None else old_logp
    ratio = torch.exp(logp - old_logp)  # (B, T)
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)  # (B, T)
    if beta != 0.0:
        kl = kl_k3(logp, ref_logp)  # (B, T)
        per_token = per_token + beta * kl
    loss = GRPO_NORMALIZATIONS[normalization](per_token, mask, max_len)

    with torch.no_grad():
        n_tok = mask.sum().clamp(min=1.0)
        low = ((ratio < 1.0 - eps_low) & (advantages < 0)).to(logp.dtype)
        high = ((ratio > 1.0 + eps_high) & (advantages > 0)).to(logp.dtype)
        stats = {
            "kl": (kl * mask).sum() / n_tok if beta != 0.0 else torch.zeros((), dtype=logp.dtype),
            "clip_ratio": (torch.maximum(low, high) * mask).sum() / n_tok,
            "clip_ratio/low": (low * mask).sum() / n_tok,
            "clip_ratio/high": (high * mask).sum() / n_tok,
            "ratio": (ratio * mask).sum() / n_tok,
        }
    return loss, stats


# ---------------------------------------------------------------------------------------------
# DPO (Rafailov et al. 2023) and IPO (Azar et al. 2023)
# ---------------------------------------------------------------------------------------------


class DPOOutput(NamedTuple):
    """Result of :func:`dpo_loss` / :func:`ipo_loss`."""

    loss: torch.Tensor  #: scalar mean of ``losses`` (with grad)
    losses: torch.Tensor  #: (B,) per-pair losses (with grad)
    chosen_rewards: torch.Tensor  #: (B,) β (log π_θ(y_w) − log π_ref(y_w)), detached
    rejected_rewards: torch.Tensor  #: (B,) β (log π_θ(y_l) − log π_ref(y_l)), detached


def _check_pairs(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> None:
    if policy_chosen.ndim != 1:
        raise InputError(f"policy_chosen must be (B,), got shape {tuple(policy_chosen.shape)}")
    _check_same_shape(
        policy_chosen, policy_rejected=policy_rejected, ref_chosen=ref_chosen, ref_rejected=ref_rejected
    )
    if not beta > 0:
        raise InputError(f"beta must be > 0, got {beta}")


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> DPOOutput:
    """DPO loss (Rafailov et al. 2023, lecture §7.3 eq. L_DPO), with cDPO label smoothing ε:

        h = β [(log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))]
        ℓ = −(1−ε) log σ(h) − ε log σ(−h)          (ε = 0: plain DPO)

    Inputs are (B,) sequence log-probs (sums over completion tokens). Implicit rewards
    r_w = β(log π_θ(y_w) − log π_ref(y_w)), r_l likewise (detached, for logging:
    rewards/chosen, rewards/rejected, rewards/margins = r_w − r_l, rewards/accuracies = r_w > r_l).

    TRL 1.16: equals ``DPOTrainer`` loss_type="sigmoid" (``-F.logsigmoid(beta * delta_score)``,
    f_divergence "reverse_kl", mean over pairs) when label_smoothing = 0; TRL 1.16's "sigmoid" ignores
    label_smoothing, the ε form here is the one TRL uses for its "aot" losses and older TRL sigmoid.
    """
    _check_pairs(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    if not 0.0 <= label_smoothing < 0.5:
        raise InputError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen_logratios = policy_chosen - ref_chosen  # (B,)
    rejected_logratios = policy_rejected - ref_rejected  # (B,)
    h = beta * (chosen_logratios - rejected_logratios)  # (B,)
    losses = -F.logsigmoid(h)
    if label_smoothing:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-h)
    return DPOOutput(
        losses.mean(), losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()
    )


def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> DPOOutput:
    """IPO loss (Azar et al. 2023, eq. 17), with τ = beta:

        h = (log π_θ(y_w) − log π_ref(y_w))/|y_w| − (log π_θ(y_l) − log π_ref(y_l))/|y_l|
        ℓ = (h − 1/(2τ))²

    The division by the completion lengths |y| (token counts, clamped ≥ 1) is TRL 1.16's
    loss_type="ipo"; pass lengths None to use unnormalized sequence log-ratios. Rewards are the
    same β-scaled log-ratios as :func:`dpo_loss` (unnormalized), as TRL logs them.
    """
    _check_pairs(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    chosen_logratios = policy_chosen - ref_chosen  # (B,)
    rejected_logratios = policy_rejected - ref_rejected  # (B,)
    cw = chosen_logratios if chosen_lengths is None else chosen_logratios / chosen_lengths.clamp(min=1)
    rl = rejected_logratios if rejected_lengths is None else rejected_logratios / rejected_lengths.clamp(min=1)
    losses = (cw - rl - 1.0 / (2.0 * beta)) ** 2
    return DPOOutput(
        losses.mean(), losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()
    )


# ---------------------------------------------------------------------------------------------
# Reward models (the step DPO removes, lecture §7.3)
# ---------------------------------------------------------------------------------------------


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       margin: torch.Tensor | float | None = None) -> torch.Tensor:
    """Negative log-likelihood of preferences under Bradley–Terry (lecture §7.3), for a reward model:

        P(y_w ≻ y_l | x) = σ(r(x,y_w) − r(x,y_l))
        L = −mean log σ(r(x,y_w) − r(x,y_l) − m)        (m = margin, 0 by default)

    ``chosen_rewards``, ``rejected_rewards``: (B,) scalar rewards; ``margin``: (B,) or a number, the
    required gap (Llama 2's margin loss). TRL 1.16: ``RewardTrainer.compute_loss`` without
    ``center_rewards_coefficient``.
    """
    if chosen_rewards.ndim != 1:
        raise InputError(f"chosen_rewards must be (B,), got shape {tuple(chosen_rewards.shape)}")
    _check_same_shape(chosen_rewards, rejected_rewards=rejected_rewards)
    diff = chosen_rewards - rejected_rewards  # (B,)
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


# ---------------------------------------------------------------------------------------------
# The derivation behind DPO (lecture §7.3), on problems small enough to enumerate y
# ---------------------------------------------------------------------------------------------


def kl_regularized_objective(policy: torch.Tensor, ref: torch.Tensor, reward: torch.Tensor, beta: float):
    """The KL-regularized RLHF objective per prompt (lecture §7.3), for enumerable completions:

        J(π; x) = Σ_y π(y|x) r(x,y) − β KL(π(·|x) ‖ π_ref(·|x)),   KL = Σ_y π log(π/π_ref)

    ``policy``, ``ref`` (X, Y) probabilities (rows sum to 1), ``reward`` (X, Y) → (X,) to MAXIMIZE.
    Terms with π(y|x) = 0 contribute 0 (0·log 0 = 0).
    """
    _check_same_shape(policy, ref_policy=ref, reward=reward)
    log_ratio = torch.where(policy > 0, torch.log(policy) - torch.log(ref), torch.zeros_like(policy))
    return (policy * reward).sum(-1) - beta * (policy * log_ratio).sum(-1)


def kl_regularized_optimum(ref: torch.Tensor, reward: torch.Tensor, beta: float) -> torch.Tensor:
    """The maximizer of :func:`kl_regularized_objective` (lecture §7.3):

        π*(y|x) = π_ref(y|x) · exp(r(x,y)/β) / Z(x),   Z(x) = Σ_y π_ref(y|x) exp(r(x,y)/β)

    computed as softmax(log π_ref + r/β) over y (no overflow for small β). (X, Y) → (X, Y).
    The maximum is J(π*; x) = β log Z(x).
    """
    _check_same_shape(ref, reward=reward)
    if not beta > 0:
        raise InputError(f"beta must be > 0, got {beta}")
    return torch.softmax(torch.log(ref) + reward / beta, dim=-1)


def implicit_reward(policy_logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward (lecture §7.3): r̂(x,y) = β log π(y|x)/π_ref(y|x).

    At π = π* it equals r(x,y) − β log Z(x): the true reward up to a per-prompt constant, which cancels
    in every Bradley–Terry comparison σ(r̂(x,y_w) − r̂(x,y_l)). Elementwise; same shape as the inputs.
    """
    _check_same_shape(policy_logp, ref_logp=ref_logp)
    return beta * (policy_logp - ref_logp)
