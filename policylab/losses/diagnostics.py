"""Training diagnostics every algorithm logs (no gradients): how far an update moved the policy and
how well the critic explains the returns. numpy arrays or torch tensors in, a 0-d value out.

- ``approx_kl``           → ``losses/approx_kl``           (PPO also early-stops on it: ``target_kl``)
- ``clip_fraction``       → ``losses/clip_fraction``
- ``explained_variance``  → ``losses/explained_variance``
"""

from __future__ import annotations

import numpy as np
import torch

from policylab.errors import InputError
from policylab.losses._xp import namespace
from policylab.losses.kl import kl_k1, kl_k3
from policylab.losses.policy_gradient import _positive, _same_shape

__all__ = ["approx_kl", "clip_fraction", "explained_variance"]

_KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}


def approx_kl(logp, old_logp, estimator: str = "k3"):
    """Sample estimate of KL(π_θold ‖ π_θ) on actions drawn from π_θold (Schulman 2020), no grad:

        k3 = mean[ (ρ − 1) − log ρ ],  ρ = exp(logp − old_logp)    (≥ 0, low variance; CleanRL/SB3)
        k1 = mean[ old_logp − logp ]                                 (unbiased, may be negative)

    Reuses ``kl_k3(p, q)``/``kl_k1(p, q)`` of ``policylab.losses.kl`` with p = π_θold (the sampler).
    Used for logging and PPO's target-KL early stop. Returns a 0-d tensor (numpy scalar for arrays).
    """
    _same_shape(logp=logp, old_logp=old_logp)
    if estimator not in _KL_ESTIMATORS:
        raise InputError(f"estimator must be one of {sorted(_KL_ESTIMATORS)}, got {estimator!r}")
    with torch.no_grad():
        kl = _KL_ESTIMATORS[estimator](torch.as_tensor(old_logp), torch.as_tensor(logp)).mean()
    return kl if isinstance(logp, torch.Tensor) else kl.numpy()


def clip_fraction(logp, old_logp, clip_eps: float):
    """Fraction of samples whose ratio lies outside the clip range: mean[ |ρ_t − 1| > ε ] (no grad)."""
    _same_shape(logp=logp, old_logp=old_logp)
    _positive("clip_eps", clip_eps)
    xp = namespace(logp)
    logp, old_logp = xp.detach(logp), xp.detach(old_logp)
    return xp.fraction(xp.abs(xp.exp(logp - old_logp) - 1.0) > clip_eps, logp)


def explained_variance(v_pred, target) -> float:
    """EV = 1 − Var[R − V] / Var[R]: 1 is a perfect critic, 0 no better than a constant (NaN if Var[R] = 0)."""
    v_pred, target = np.asarray(v_pred), np.asarray(target)
    var = float(np.var(target))
    return float("nan") if var == 0.0 else 1.0 - float(np.var(target - v_pred)) / var
