"""DQN's numpy backend: the TD regression step by hand on numpy views of the Q-networks.

Why: with rl-zoo's CartPole settings DQN takes 128 minibatch steps of a (256, 256) MLP per 256 env
steps. Through autograd one step costs ~1.8 ms here, most of it per-op dispatch (the backward
engine, a dozen ``_foreach`` kernels of Adam); the same step on the numpy mirror (``fast.mlp``:
one BLAS product + bias + activation per layer and direction) with Adam in one compiled pass
(``fast.optim``) costs a fraction of that. Same equations, same memory: the mirror views the torch
parameters, gradients and Adam state, so checkpoints, ``load`` and the torch backend see one state.

One step on a minibatch (B transitions, A actions):

    y = r + γ_t max_a′ Q_θ⁻(s′, a′)   (double: Q_θ⁻(s′, argmax Q_θ(s′, ·)))   losses.value_based
    g = ∂L/∂Q_θ(s, ·) (B, A): ``dqn_loss_grad`` in column a_b, 0 elsewhere     losses.grads
        + α · ``cql_regularizer_grad`` = α(softmax Q_θ(s, ·) − onehot a)/B     (CQL, α > 0)
    ∂L/∂θ by the MLP's chain rule → global-norm clip → Adam                    fast.mlp, fast.optim
"""

from __future__ import annotations

import numpy as np
import torch

from policylab.deep.backend import REPLACED
from policylab.deep.fast.mlp import NumpyMLP
from policylab.deep.fast.optim import adam_step
from policylab.deep.networks import clip_grad_norm, flat_buffers_intact
from policylab.losses.grads import cql_regularizer_grad, dqn_loss_grad
from policylab.losses.value_based import (
    cql_regularizer,
    double_q_learning_target,
    dqn_loss,
    q_learning_target,
)

__all__ = ["NumpyQBackend"]


class NumpyQBackend:
    """Q_θ and Q_θ⁻ as numpy mirrors (views of ``flatten_parameters`` buffers of ``net.q`` and
    ``net.q_target``); ``td_step`` is one minibatch step stepping torch's ``optimizer`` state."""

    name = "numpy"

    def __init__(self, net, activation: str, flat_params, optimizer):
        self.net, self.flat_params, self.optimizer = net, flat_params, optimizer
        self.q, self.q_target = NumpyMLP(net.q, activation), NumpyMLP(net.q_target, activation)
        self._grad_view = flat_params.grad.numpy()

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        return self.q.forward(obs)[0]  # (B, A)

    def policy_params(self, obs: np.ndarray) -> torch.Tensor:
        """Q(s, ·) as the categorical head's logits, for ``Agent.act`` (its mode = argmax Q)."""
        return torch.from_numpy(self.q_values(obs))

    def td_step(self, obs, actions, rewards, next_obs, discounts, *, double_q: bool, loss: str,
                max_grad_norm: float, cql_alpha: float = 0.0) -> tuple[float, float, float]:
        """One minibatch step on TD loss + ``cql_alpha``·CQL regularizer; returns (TD loss, mean
        Q_θ(s, a), regularizer (0 when α = 0)) before the step. Shapes as ``ReplaySample``."""
        q_next = self.q_target.forward(next_obs)[0]  # (B, A)
        if double_q:
            y = double_q_learning_target(rewards, discounts, q_next, self.q.forward(next_obs)[0])
        else:
            y = q_learning_target(rewards, discounts, q_next)  # (B,)
        q_all, cache = self.q.forward(obs)  # (B, A)
        rows = np.arange(len(q_all))
        q_sa = q_all[rows, actions]  # (B,)
        g = np.zeros_like(q_all)
        g[rows, actions] = dqn_loss_grad(q_sa, y, loss)
        reg = 0.0
        if cql_alpha:
            reg = cql_regularizer(q_all, actions)
            g += np.float32(cql_alpha) * cql_regularizer_grad(q_all, actions)
        self.q.backward(g, cache)  # writes ∂L/∂θ into the flat gradient
        clip_grad_norm(self._grad_view, max_grad_norm)
        adam_step(self.optimizer, self.flat_params)
        return dqn_loss(q_sa, y, loss), float(q_sa.mean()), reg

    def verify(self) -> None:
        if not flat_buffers_intact(self.flat_params, self._grad_view) or \
                self.q.W[0].ctypes.data != self.net.q[0].weight.data_ptr():
            raise RuntimeError(REPLACED)
