"""Policy heads: the action distribution π(a|s) a network's output parameterizes.

Written directly (no ``torch.distributions``): the PPO update calls these thousands of times
on small batches, where the Distribution objects' validation and broadcasting dominate.

A head is a tiny stateless object chosen from the action space by :func:`head_for`:

- :class:`CategoricalHead`  — discrete actions,  params = logits ``(B, n)``
- :class:`GaussianHead`     — continuous actions, params = ``(mean (B, d), log_std (d,))``,
  a diagonal Gaussian whose log-std is a free parameter, independent of the state.

Every head has ``sample(params, generator)``, ``mode(params)``, ``log_prob(params, a)``,
``entropy(params)`` and ``log_prob_entropy(params, a)`` (both at once, sharing work).
Their numpy twins with hand-written derivatives (PPO's numpy backend) are in ``deep/fast/heads.py``.
"""

from __future__ import annotations

import math

import torch

from policylab.errors import InputError

__all__ = ["CategoricalHead", "GaussianHead", "head_for"]

_LOG_2PI = math.log(2.0 * math.pi)


class CategoricalHead:
    """π(a|s) = softmax(z(s))_a with logits z (B, n).

        log π(a|s) = z_a − log Σ_b exp z_b,    H(π(·|s)) = −Σ_a π(a|s) log π(a|s)
    """

    discrete = True

    def __init__(self, n: int):
        self.n = int(n)
        self.param_dim = self.n  # network output size
        self.action_shape: tuple[int, ...] = ()

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gumbel-max: argmax_a (z_a + G_a), G_a = −log E_a, E_a ~ Exp(1) — exact, cheaper than multinomial."""
        e = torch.empty_like(logits).exponential_(generator=generator)  # (B, n)
        return (logits - e.log_()).argmax(dim=-1)  # (B,)

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)  # (B,)

    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        logp_all = torch.log_softmax(logits, dim=-1)  # (B, n)
        return logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)  # (B,)

    def entropy(self, logits: torch.Tensor) -> torch.Tensor:
        logp_all = torch.log_softmax(logits, dim=-1)
        return -(logp_all.exp() * logp_all).sum(-1)  # (B,)

    def log_prob_entropy(self, logits: torch.Tensor, actions: torch.Tensor):
        logp_all = torch.log_softmax(logits, dim=-1)  # (B, n)
        logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)  # (B,)
        return logp, -(logp_all.exp() * logp_all).sum(-1)


class GaussianHead:
    """π(a|s) = N(a; μ(s), diag σ²) with σ = exp(log_std) independent of the state.

        log π(a|s) = −½ Σ_i [((a_i − μ_i)/σ_i)² + 2 log σ_i + log 2π]
        H(π(·|s))  = Σ_i [log σ_i + ½ (1 + log 2π)]

    Actions are sampled unbounded; the trainer clips them to the Box bounds before
    ``env.step`` and stores the unclipped sample (as SB3 and CleanRL do).
    """

    discrete = False

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.param_dim = self.dim
        self.action_shape = (self.dim,)

    def sample(self, params, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, log_std = params
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + noise * log_std.exp()  # (B, d)

    def mode(self, params) -> torch.Tensor:
        return params[0]

    def log_prob(self, params, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = params
        z = (actions - mean) * torch.exp(-log_std)  # (B, d)
        return -0.5 * (z * z).sum(-1) - log_std.sum() - 0.5 * self.dim * _LOG_2PI  # (B,)

    def entropy(self, params) -> torch.Tensor:
        mean, log_std = params
        h = log_std.sum() + 0.5 * self.dim * (1.0 + _LOG_2PI)
        return h.expand(mean.shape[:-1])  # (B,)

    def log_prob_entropy(self, params, actions: torch.Tensor):
        return self.log_prob(params, actions), self.entropy(params)


def head_for(action_space):
    """The head for a Gymnasium action space: Discrete → Categorical, 1-d Box → Gaussian."""
    from gymnasium import spaces

    if isinstance(action_space, spaces.Discrete):
        if int(action_space.start) != 0:
            raise InputError(f"Discrete action space must start at 0, got start={action_space.start}")
        return CategoricalHead(action_space.n)
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        return GaussianHead(action_space.shape[0])
    raise InputError(
        f"unsupported action space {action_space}: policylab.deep handles Discrete and 1-d Box actions"
    )
