"""Losses: pure functions, one per objective of the lecture; each returns a scalar to *minimize*.

- ``kl``: KL estimators k1, k3 (Schulman 2020).
- ``policy_gradient``: REINFORCE, actor-critic, PPO clipped surrogate, value loss, entropy, and
  ``ppo_loss`` (PPO's composed loss: total and terms; torch tensors or numpy arrays).
- ``diagnostics``: ``approx_kl``, ``clip_fraction``, ``explained_variance`` (logged, no gradient).
- ``preference``: GRPO and DPO for language models.
- ``value_based``: DQN / double-DQN targets and TD loss, the CQL regularizer (offline DQN), SAC's soft target, critic, actor and
  temperature losses, the tanh-Gaussian log-density, polyak averaging.
- ``grads``: numpy derivatives ∂L/∂(network outputs) of the PPO, DQN and CQL losses (the numpy backends; tested
  against autograd). Import them from ``policylab.losses.grads``.

Every loss is a function of tensors/arrays (no trainer state).
"""

from policylab.losses.diagnostics import *
from policylab.losses.kl import *
from policylab.losses.policy_gradient import *
from policylab.losses.preference import *
from policylab.losses.value_based import *
