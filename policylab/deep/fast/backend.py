"""The numpy backend: forward, hand-written backward and optimizer step on numpy views of the torch
network's flat parameter and gradient buffers (interface: ``policylab.deep.backend``).

One minibatch: the mirror's forward (``mlp``) → the numpy head's log π, H (``heads``) → the composed
loss and its derivative ∂L/∂(log π, H, V) (``losses.grads.DERIVATIVES``) → the head's and the MLPs'
backward into the flat gradient → clip + Adam in one compiled pass over torch's optimizer state
(``optim``). The loss it returns (and PPO logs) is the very function whose derivative it follows.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import nn

from policylab.deep.backend import REPLACED
from policylab.deep.fast.heads import numpy_head
from policylab.deep.fast.mlp import ACTIVATION_CODES, NumpyPolicyValueNet
from policylab.deep.fast.optim import adam_step
from policylab.deep.networks import ACTIVATIONS, PolicyValueNet, clip_grad_norm, flat_buffers_intact
from policylab.losses.grads import DERIVATIVES

__all__ = ["NumpyBackend", "unsupported"]


def unsupported(net, head, activation: str, loss) -> str | None:
    """Why the numpy backend cannot compute ``loss`` for ``net``/``head`` (None when it can): it needs
    a ``PolicyValueNet`` of plain MLPs (Linear + one activation it knows) in float32 on the CPU, a
    head with a numpy twin, and a loss with a derivative in ``DERIVATIVES`` taking all its options."""
    if type(net) is not PolicyValueNet:
        return f"the network is a {type(net).__name__}, not policylab's PolicyValueNet MLP"
    if getattr(net, "shared_trunk", False):
        return "actor and critic share a trunk (the numpy mirror has two separate MLPs)"
    if activation not in ACTIVATION_CODES:
        return f"no numpy kernel for activation {activation!r}"
    act_type = ACTIVATIONS.get(activation)
    for part in (net.actor, net.critic):
        if part is not None and not all(type(m) in (nn.Linear, act_type) for m in part):
            return "the network has layers other than Linear and the activation"
    params = list(net.parameters())
    if any(p.device.type != "cpu" for p in params):
        return "the network is not on the CPU"
    if any(p.dtype != torch.float32 for p in params):
        return "the network is not float32"
    if numpy_head(head) is None:
        return f"no numpy twin of the {type(head).__name__}"
    derivative = DERIVATIVES.get(getattr(loss, "func", loss))
    if derivative is None:
        return f"{getattr(getattr(loss, 'func', loss), '__name__', loss)} has no derivative in losses.grads"
    try:
        inspect.signature(derivative).bind_partial(*getattr(loss, "args", ()), **getattr(loss, "keywords", {}))
    except TypeError as exc:
        return f"{derivative.__name__} does not take the loss's options ({exc})"
    return None


class NumpyBackend:
    """Hand-written chain rule on the numpy mirror of ``net``; actions drawn with numpy ``rng``."""

    name = "numpy"

    def __init__(self, net, head, activation: str, rng: np.random.Generator, flat_params, optimizer):
        self.net, self.rng = net, rng
        self.mirror = NumpyPolicyValueNet(net, activation)  # views of the same weights and grads
        self.head, self.torch_head = numpy_head(head), head
        self.flat_params, self.optimizer = flat_params, optimizer
        self._grad_view = flat_params.grad.numpy()

    def sample(self, obs: np.ndarray):
        params, _ = self.mirror.policy_params(obs)
        action = self.head.sample(params, self.rng)  # (N,) or (N, d)
        return action, self.head.log_prob_entropy(params, action)[0], self.mirror.value(obs)[0]

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.mirror.value(obs)[0]

    def policy_params(self, obs: np.ndarray):
        out = torch.from_numpy(self.mirror.actor.forward(obs)[0])  # ~5× cheaper per call than torch
        return out if self.torch_head.discrete else (out, self.net.log_std)

    def loss_and_grad(self, obs, actions, loss, terms: bool = True, **constants):
        mirror, head = self.mirror, self.head
        params, actor_cache = mirror.policy_params(obs)
        logp, entropy, head_cache = head.log_prob_entropy(params, actions)  # (b,), (b,)
        values, critic_cache = mirror.value(obs)  # (b,)
        g_logp, g_entropy, g_values = DERIVATIVES[loss.func](logp, entropy, values, *loss.args,
                                                             **loss.keywords, **constants)
        mirror.policy_backward(head.backward(head_cache, actions, g_logp, g_entropy), actor_cache)
        mirror.value_backward(g_values, critic_cache)
        return (loss(logp, entropy, values, **constants) if terms else None), logp, entropy, values

    def step(self, max_grad_norm: float) -> None:
        clip_grad_norm(self._grad_view, max_grad_norm)
        adam_step(self.optimizer, self.flat_params)

    def verify(self) -> None:
        if not (flat_buffers_intact(self.flat_params, self._grad_view) and self.mirror.shares_memory_with(self.net)):
            raise RuntimeError(REPLACED)
