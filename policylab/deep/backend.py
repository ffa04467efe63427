"""How a policy-value network computes: the backend interface, the autograd backend and the choice.

A backend wraps ``agent.net`` (weights in one flat buffer, see ``networks.flatten_parameters``) and
the algorithm's torch optimizer over it. Agent and PPO call it without knowing which it is:

    sample(obs)                 → (a, log π(a|s), V(s)) numpy (N, …) for the rollout
    value(obs)                  → V(s) (B,) numpy
    policy_params(obs)          → the head's torch params (no grad), for ``act``/``evaluate``
    loss_and_grad(obs, a, loss, terms=True, **constants)
                                → forward on the minibatch, ``loss(logp, H, V, **constants)`` (a
                                  ``functools.partial`` of a composed loss such as ``losses.ppo_loss``),
                                  backward into the flat gradient; returns (the loss's total and
                                  terms, or None if not ``terms`` and the backend need not compute
                                  them; logp, H, V as numpy)
    step(max_grad_norm)         → global-norm clip + the optimizer's step
    verify()                    → raise if the flat parameter/gradient buffers were replaced

``TorchBackend`` is autograd (any network, any loss, any device); ``fast.NumpyBackend`` is the hand-
written chain rule on numpy views of the same memory (MLP on CPU, the two heads, losses with a
derivative in ``losses.grads.DERIVATIVES``): ~3–4× faster per env step on CartPole-sized nets.
``make_backend("auto" | "numpy" | "torch", …)`` picks one and says why.
"""

from __future__ import annotations

import numpy as np
import torch

from policylab.deep.networks import clip_grad_norm, flat_buffers_intact
from policylab.errors import ConfigError

__all__ = ["BACKENDS", "TorchBackend", "choose_backend", "make_backend"]

BACKENDS = ("auto", "numpy", "torch")

REPLACED = ("the parameter/gradient buffers were replaced (e.g. by optimizer.zero_grad(set_to_none=True) "
            "or load_state_dict(assign=True)); rebuild the agent or load it from a checkpoint")


class TorchBackend:
    """Autograd through the torch network; actions drawn with the torch Generator ``rng``."""

    name = "torch"

    def __init__(self, net, head, rng: torch.Generator, flat_params=None, optimizer=None):
        self.net, self.head, self.rng = net, head, rng
        self.flat_params, self.optimizer = flat_params, optimizer
        self._grad_view = None if flat_params is None else flat_params.grad.numpy()

    def sample(self, obs: np.ndarray):
        obs_t = torch.from_numpy(obs)
        params = self.net.policy_params(obs_t)
        action = self.head.sample(params, self.rng)  # (N,) or (N, d)
        return action.numpy(), self.head.log_prob(params, action).numpy(), self.net.value(obs_t).numpy()

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.net.value(torch.from_numpy(obs)).numpy()

    def policy_params(self, obs: np.ndarray):
        return self.net.policy_params(torch.from_numpy(obs))

    def loss_and_grad(self, obs, actions, loss, terms: bool = True, **constants):
        obs_t = torch.from_numpy(obs)
        logp, entropy = self.head.log_prob_entropy(self.net.policy_params(obs_t), torch.from_numpy(actions))
        values = self.net.value(obs_t)  # (b,)
        consts = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in constants.items()}
        out = loss(logp, entropy, values, **consts)
        self.flat_params.grad.zero_()
        out.total.backward()
        return type(out)(*(t.detach() for t in out)), logp.detach().numpy(), entropy.detach().numpy(), values.detach().numpy()

    def step(self, max_grad_norm: float) -> None:
        clip_grad_norm(self._grad_view, max_grad_norm)
        self.optimizer.step()

    def verify(self) -> None:
        if not flat_buffers_intact(self.flat_params, self._grad_view):
            raise RuntimeError(REPLACED)


def choose_backend(choice: str, why_not: str | None, auto_why: str) -> tuple[bool, str]:
    """(numpy?, why) for the config field ``backend=choice`` ∈ BACKENDS, given why the numpy backend
    cannot run (None when it can): "auto" takes numpy when it can (reason ``auto_why``), torch
    otherwise; "numpy" where it cannot run, or an unknown choice, is a ConfigError."""
    if choice not in BACKENDS:
        raise ConfigError(f"hyperparameter backend={choice!r} must be one of {', '.join(BACKENDS)}")
    if choice == "numpy" and why_not:
        raise ConfigError(f"hyperparameter backend='numpy' cannot run this network: {why_not}; "
                          "use backend='auto' or 'torch'")
    if choice == "torch" or why_not:
        return False, "asked for" if choice == "torch" else f"auto: {why_not}"
    return True, "asked for" if choice == "numpy" else f"auto: {auto_why}"


def make_backend(choice: str, net, head, activation: str, torch_rng, np_rng, flat_params, optimizer, loss):
    """(backend, why) for ``choice`` ∈ BACKENDS: "auto" takes numpy where ``fast.unsupported`` finds
    nothing against it and torch otherwise; "numpy" where it cannot run is a ConfigError."""
    from policylab.deep import fast

    numpy, why = choose_backend(choice, fast.unsupported(net, head, activation, loss),
                                "MLP on CPU, a supported head and loss")
    if not numpy:
        return TorchBackend(net, head, torch_rng, flat_params, optimizer), why
    return fast.NumpyBackend(net, head, activation, np_rng, flat_params, optimizer), why
