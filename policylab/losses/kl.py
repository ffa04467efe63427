"""KL-divergence estimators from samples (J. Schulman, "Approximating KL divergence", 2020)."""

from __future__ import annotations

import torch

__all__ = ["kl_k1", "kl_k3"]


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 estimator of KL(π ‖ π_ref) for samples a ~ π:  k1 = log π(a) − log π_ref(a).

    Unbiased, high variance, can be negative per sample. Elementwise; same shape as inputs.
    """
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(π ‖ π_ref) for samples a ~ π (used by GRPO, DeepSeekMath eq. 4):

        k3 = exp(log π_ref(a) − log π(a)) − (log π_ref(a) − log π(a)) − 1  ≥ 0

    Unbiased and always non-negative. Elementwise; same shape as inputs.
    """
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1.0
