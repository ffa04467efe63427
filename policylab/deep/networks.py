"""Networks: MLP actor (policy head parameters) and MLP critic V(s), separate bodies.

Orthogonal initialisation as in the PPO implementations (Engstrom et al. 2020, "Implementation
Matters"; Huang et al. 2022, "The 37 implementation details of PPO"): hidden layers gain √2,
policy output gain 0.01 (near-uniform initial policy), value output gain 1.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from policylab.errors import InputError

__all__ = ["ACTIVATIONS", "PolicyValueNet", "clip_grad_norm", "flat_buffers_intact", "flatten_parameters", "mlp"]

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None, activation: str = "tanh",
        out_gain: float = 1.0, ortho_init: bool = True) -> nn.Sequential:
    """in_dim → hidden… → out_dim, no output activation (``out_dim=None``: the hidden body only,
    ending in an activation). ``ortho_init``: orthogonal weights (gain √2, output ``out_gain``) and
    zero biases; else PyTorch's default ``nn.Linear`` init (SB3's ``ortho_init=False``)."""
    if activation not in ACTIVATIONS:
        raise InputError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden]
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    if out_dim is not None:
        layers.append(nn.Linear(sizes[-1], out_dim))
    for layer in layers if ortho_init else ():
        if isinstance(layer, nn.Linear):
            gain = out_gain if layer is layers[-1] and out_dim is not None else math.sqrt(2.0)
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class PolicyValueNet(nn.Module):
    """π_θ(·|s) parameters from ``actor`` and V_w(s) from ``critic`` (None without a critic).

    ``policy_params(obs)`` returns what the head expects: logits (B, n) for a categorical head,
    ``(mean (B, d), log_std (d,))`` for a Gaussian head (``log_std`` is an ``nn.Parameter``).
    Parameters: ``actor_parameters()`` = actor body + log_std, ``critic.parameters()``.
    ``shared_trunk``: one hidden body feeds both output layers (``actor`` and ``critic`` are then
    ``Sequential(trunk, linear)`` holding the same trunk, so their parameters overlap).
    """

    def __init__(self, obs_dim: int, head, hidden: Sequence[int] = (64, 64),
                 activation: str = "tanh", critic: bool = True, log_std_init: float = 0.0,
                 ortho_init: bool = True, shared_trunk: bool = False):
        super().__init__()
        self.head = head
        self.shared_trunk = shared_trunk
        if shared_trunk:
            trunk = mlp(obs_dim, hidden, None, activation, ortho_init=ortho_init)
            self.actor = nn.Sequential(trunk, *mlp(hidden[-1], (), head.param_dim, activation, 0.01, ortho_init))
            self.critic = nn.Sequential(trunk, *mlp(hidden[-1], (), 1, activation, 1.0, ortho_init)) if critic else None
        else:
            self.actor = mlp(obs_dim, hidden, head.param_dim, activation, 0.01, ortho_init)
            self.critic = mlp(obs_dim, hidden, 1, activation, 1.0, ortho_init) if critic else None
        self.log_std = None if head.discrete else nn.Parameter(torch.full((head.param_dim,), float(log_std_init)))

    def policy_params(self, obs: torch.Tensor):
        out = self.actor(obs)  # (B, n) or (B, d)
        return out if self.log_std is None else (out, self.log_std)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)  # (B,)

    def actor_parameters(self) -> list[nn.Parameter]:
        return list(self.actor.parameters()) + ([] if self.log_std is None else [self.log_std])


def flatten_parameters(module: nn.Module) -> nn.Parameter:
    """Make every parameter of ``module`` (and its ``.grad``) a view into ONE contiguous buffer.

    Returns the flat parameter, whose ``.grad`` is the flat gradient buffer the per-parameter grads
    view. An optimizer over ``[flat]`` and gradient-norm clipping then cost one kernel each instead
    of one per tensor (the PPO update's overhead on small nets). Backward accumulates into the views
    in place, so clear gradients with ``flat.grad.zero_()`` — never ``zero_grad(set_to_none=True)``.
    ``module.state_dict()`` / ``load_state_dict`` keep working (they copy into the views).
    """
    params = list(module.parameters())
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat.data[offset:offset + n].view_as(p)
        p.grad = flat.grad[offset:offset + n].view_as(p)
        offset += n
    return flat


def flat_buffers_intact(flat: nn.Parameter, grad_view) -> bool:
    """True while ``flat.grad`` is still the buffer ``grad_view`` (a numpy view taken after
    :func:`flatten_parameters`) points at — False after ``zero_grad(set_to_none=True)``."""
    return flat.grad is not None and flat.grad.data_ptr() == grad_view.ctypes.data


def clip_grad_norm(grad: np.ndarray, max_norm: float) -> float:
    """Global-norm clipping in place of a flat gradient (numpy view of ``flatten_parameters``'s buffer),
    as ``torch.nn.utils.clip_grad_norm_`` but one BLAS dot instead of ~10 torch ops:
    g ← g · min(1, max_norm / (‖g‖₂ + 1e-6)). Returns ‖g‖₂ before clipping."""
    norm = float(np.sqrt(np.dot(grad, grad)))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        grad *= coef
    return norm
