"""The few array operations the policy-gradient losses need, for numpy arrays and torch tensors alike.

A loss written with ``xp = namespace(x)`` runs on tensors (autograd, any device) and on numpy arrays
(PPO's numpy backend logs exactly the loss whose derivative ``policylab.losses.grads`` gives).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["namespace"]


class _Numpy:
    exp, minimum, maximum, clip, abs = np.exp, np.minimum, np.maximum, np.clip, np.abs

    @staticmethod
    def detach(x):
        return x

    @staticmethod
    def fraction(mask, like):
        """mean of a boolean array, in ``like``'s dtype."""
        return mask.mean(dtype=like.dtype)


class _Torch:
    exp, minimum, maximum, clip, abs = torch.exp, torch.minimum, torch.maximum, torch.clamp, torch.abs

    @staticmethod
    def detach(x):
        return x.detach()

    @staticmethod
    def fraction(mask, like):
        return mask.to(like.dtype).mean()


def namespace(x):
    """``_Torch`` for a tensor, ``_Numpy`` for anything else (numpy arrays)."""
    return _Torch if isinstance(x, torch.Tensor) else _Numpy
