"""Losses: pure torch functions, one per objective of the lecture.

- ``kl``: KL estimators k1, k3 (Schulman 2020).
- ``policy_gradient``: REINFORCE, actor-critic, PPO clipped surrogate, value loss, entropy.
- ``preference``: GRPO and DPO for language models.
- ``grads``: numpy derivatives ∂L/∂input of the PPO terms (for PPO's numpy backend; tested
  against autograd). Import them from ``policylab.losses.grads``.

Every loss is a function of tensors (no trainer state); it returns a scalar to *minimize*.
"""

from policylab.losses.kl import *
from policylab.losses.policy_gradient import *
from policylab.losses.preference import *
