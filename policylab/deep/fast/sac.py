"""SAC's numpy backend: one gradient step by hand on numpy views of the actor, the critics, the
target critics and log α (``deep.sac.SAC.gradient_step`` is the same step through autograd).

Why: at batch 256 with (256, 256) networks a SAC step is ~16 (256 × 256) · (256 × 256) matrix
products (~3.7 ms single-threaded here); through autograd it cost 10–12 ms, the rest per-op
dispatch, the backward engine and the weight gradients of products nobody needs. Here each layer
is one numba kernel each way (``fast.mlp``), the actor's pass through the critics computes ∂Q/∂a
only (``NumpyMLP.input_grad``), each critic on the rows where it is the min only (the other rows'
gradient is 0: 15 products instead of 16), and Adam is one compiled pass per buffer (``fast.optim``)
on torch's own optimizer state — so checkpoints, ``load`` and the torch backend see one state; that
pass also sums what it writes, which the divergence guard reads instead of summing it again.

One step on a minibatch (s, a, r, γ_t, s′), in Stable-Baselines3's order (equations: ``deep.sac``):

    ã = tanh(μ + σε), log π(ã|s)       ε ~ N(0, I) from the agent's torch Generator    TanhGaussian
    ∂J(α)/∂log α → Adam (learned α)                    losses.grads.sac_temperature_loss_grad
    y = r + γ_t(min_i Q_φ⁻ᵢ(s′, ã′) − α log π(ã′|s′))  losses.value_based.soft_q_target
    ∂J_Q/∂Q_φᵢ = (Q_φᵢ − y)/B → critics' chain rule → Adam     losses.grads.sac_critic_loss_grad
    ∂J_π/∂(log π, min Q) = (α/B, −1/B) → ∂Q/∂ã (the min critic's input gradient) → ã, log π → (μ, log σ)
        → actor's chain rule → Adam                    sac_actor_loss_grad, tanh_gaussian_log_prob_grad
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from policylab.deep.backend import REPLACED
from policylab.deep.fast.mlp import NumpyMLP
from policylab.deep.fast.optim import adam_step
from policylab.deep.networks import flat_buffers_intact
from policylab.losses.grads import (
    sac_actor_loss_grad,
    sac_critic_loss_grad,
    sac_temperature_loss_grad,
    tanh_gaussian_log_prob_grad,
)
from policylab.losses.value_based import (
    polyak_update,
    sac_actor_loss,
    sac_critic_loss,
    sac_temperature_loss,
    soft_q_target,
    tanh_gaussian_log_prob,
)

__all__ = ["NumpySACBackend", "TanhGaussian"]


def _key(t: torch.Tensor) -> tuple:
    return t.data_ptr(), t.numel()


def _adam(optimizer, param, target=None, tau: float | None = None) -> dict:
    """``adam_step`` on the flat buffer, with θ⁻ ← τθ + (1 − τ)θ⁻ in the same pass when 0 < τ < ½
    (else ``polyak_update`` after it). An optimizer over the per-tensor views of the buffer instead
    (as SAC's before the flat buffers) steps itself: the gradients it reads are views of the same memory.
    Returns the sums the pass took, {(data_ptr, numel): Σ} of g, θ and the fused θ⁻ (for the guard)."""
    fused, sums = tau is not None and 0.0 < tau < 0.5, {}
    if optimizer.param_groups[0]["params"][0] is param:
        sum_g, sum_p, sum_t = adam_step(optimizer, param, target, tau) if fused else adam_step(optimizer, param)
        sums = {_key(param.grad): sum_g, _key(param): sum_p} | ({_key(target): sum_t} if fused else {})
    else:
        optimizer.step()
        fused = False
    if tau is not None and not fused:
        polyak_update([target], [param], tau)
    return sums


class TanhGaussian:
    """numpy twin of ``sac.TanhGaussianHead.rsample`` on the actor's output (μ, raw log σ) (B, 2d),
    with its backward; log σ is clamped to [lo, hi] as the torch head does."""

    def __init__(self, dim: int, lo: float, hi: float):
        self.dim, self.lo, self.hi = dim, np.float32(lo), np.float32(hi)

    def params(self, out: np.ndarray):
        """(μ, log σ) (B, d) each."""
        return out[:, :self.dim], np.minimum(np.maximum(out[:, self.dim:], self.lo), self.hi)  # np.clip, cheaper

    def rsample(self, out: np.ndarray, eps: np.ndarray):
        """(ã = tanh(u) (B, d), log π(ã|s) (B,), cache), u = μ + σε with the given noise ε (B, d)."""
        mean, log_std = self.params(out)
        std = np.exp(log_std)
        u = mean + std * eps
        a = np.tanh(u)
        return a, tanh_gaussian_log_prob(mean, log_std, u), (out, mean, log_std, std, eps, u, a)

    def backward(self, cache, g_logp: np.ndarray, g_a: np.ndarray) -> np.ndarray:
        """∂L/∂(actor output) (B, 2d) from ∂L/∂log π (B,) and ∂L/∂ã (B, d), through u = μ + σε:

            g_u = g_logp ∂log π/∂u + g_ã (1 − ã²)
            g_μ = g_logp ∂log π/∂μ + g_u,    g_log σ = (g_logp ∂log π/∂log σ + g_u σε) 𝟙[lo ≤ raw ≤ hi]
        """
        out, mean, log_std, std, eps, u, a = cache
        d_mean, d_log_std, d_u = tanh_gaussian_log_prob_grad(mean, log_std, u)  # (B, d) partials
        gl = g_logp[:, None]
        g_u = gl * d_u + g_a * (1.0 - a * a)
        raw = out[:, self.dim:]
        g = np.empty_like(out)
        g[:, :self.dim] = gl * d_mean + g_u
        g[:, self.dim:] = (gl * d_log_std + g_u * (std * eps)) * ((raw >= self.lo) & (raw <= self.hi))
        return g


class NumpySACBackend:
    """The SAC networks as numpy mirrors (views of the ``flatten_parameters`` buffers ``flat`` of
    ``net.actor``, ``net.critics``, ``net.critics_target``); ``gradient_step`` steps torch's
    ``optimizers`` state; ε is drawn from the torch Generator ``rng``, as the torch backend does."""

    name = "numpy"

    def __init__(self, net, head, activation: str, flat: dict, optimizers: dict, rng: torch.Generator, *,
                 learn_alpha: bool, target_entropy: float, log_std_bounds: tuple[float, float]):
        self.net, self.flat, self.optimizers, self.rng = net, flat, optimizers, rng
        self.actor = NumpyMLP(net.actor, activation)
        self.critics = [NumpyMLP(c, activation) for c in net.critics]
        self.targets = [NumpyMLP(c, activation) for c in net.critics_target]
        self.head = TanhGaussian(head.dim, *log_std_bounds)
        self.low, self.scale = head.low.numpy(), head.scale.numpy()  # (d,) the action box, affine to [−1, 1]
        self.learn_alpha, self.target_entropy = learn_alpha, target_entropy
        if learn_alpha and net.log_ent_coef.grad is None:
            net.log_ent_coef.grad = torch.zeros_like(net.log_ent_coef)
        self.log_alpha = net.log_ent_coef.detach().numpy()  # 0-d view
        self._grad_views = {k: flat[k].grad.numpy() for k in ("actor", "critics")}
        self._eps = None  # (ε, ε′) (2B, d): a torch buffer the Generator fills in place, and its numpy view
        self.sums: dict | None = None  # {(data_ptr, numel): Σ} of what the last step's Adam passes wrote

    def policy_params(self, obs: np.ndarray):
        """(μ, log σ) as torch tensors, for ``act`` and ``evaluate``."""
        mean, log_std = self.head.params(self.actor.forward(obs)[0])
        return torch.from_numpy(mean), torch.from_numpy(log_std)

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """a = low + (tanh(μ + σε) + 1)·scale, ε from the torch Generator (``TanhGaussianHead.sample``). (N, d)"""
        mean, log_std = self.head.params(self.actor.forward(obs)[0])
        return self.low + (np.tanh(mean + np.exp(log_std) * self._noise(mean.shape)) + 1.0) * self.scale

    def _noise(self, shape) -> np.ndarray:
        return torch.randn(shape, generator=self.rng).numpy()

    def _noise_pair(self, shape) -> np.ndarray:
        """(ε; ε′) (2B, d): two draws of ``shape`` (B, d) in the torch backend's order, into one buffer."""
        if self._eps is None or self._eps[0].shape[0] != 2 * shape[0]:
            buf = torch.empty((2 * shape[0], *shape[1:]))
            self._eps = buf, buf[:shape[0]], buf[shape[0]:], buf.numpy()
        _, first, second, view = self._eps
        first.normal_(generator=self.rng)  # = torch.randn(shape, generator=rng), twice
        second.normal_(generator=self.rng)
        return view

    def _q(self, critics, obs: np.ndarray, a: np.ndarray):
        x = np.concatenate((obs, a), axis=1)  # (B, obs_dim + d)
        return [c.forward(x) for c in critics]  # n × ((B, 1), cache)

    def gradient_step(self, obs, actions, rewards, next_obs, discounts, tau: float | None = None) -> tuple:
        """One step on a minibatch (shapes as ``ReplaySample``), then φ⁻ ← τφ + (1 − τ)φ⁻ unless τ is
        None; returns (actor loss, critic loss, −mean log π, α, temperature loss (NaN for a fixed α)),
        losses before the step."""
        opt, head, B = self.optimizers, self.head, len(obs)
        a = (actions - self.low) / self.scale - 1.0  # (B, d) in [−1, 1]
        # the actor on s and s′ in one pass (its weights do not change before its own step)
        out, cache = self.actor.forward(np.concatenate((obs, next_obs)))  # (2B, 2d)
        actor_cache = [h[:B] for h in cache]
        # ã on s and ã′ on s′ in one pass too: ε then ε′, drawn in the torch backend's order
        a_all, logp_all, pi_cache = head.rsample(out, self._noise_pair(a.shape))
        a_pi, a_next, logp, logp_next = a_all[:B], a_all[B:], logp_all[:B], logp_all[B:]  # (B, d), (B,)
        pi_cache = [c[:B] for c in pi_cache]  # the actor's gradient flows through ã on s only
        alpha = np.exp(self.log_alpha)  # α of this step, before its update (as SB3)
        alpha_loss, sums = float("nan"), {}
        if self.learn_alpha:
            alpha_loss = sac_temperature_loss(self.log_alpha, logp, self.target_entropy)
            self.net.log_ent_coef.grad.numpy()[...] = sac_temperature_loss_grad(self.log_alpha, logp,
                                                                               self.target_entropy)
            sums = _adam(opt["ent_coef"], self.net.log_ent_coef)
        q_next = functools.reduce(np.minimum, [o[:, 0] for o, _ in self._q(self.targets, next_obs, a_next)])  # (B,)
        y = soft_q_target(rewards, discounts, q_next, logp_next, alpha)  # (B,)
        x, q = np.concatenate((obs, a), axis=1), []  # (B, obs_dim + d)
        for critic in self.critics:  # each critic's backward right after its forward, its activations still in cache
            out_i, cache = critic.forward(x)
            q.append(out_i[:, 0])  # (B,)
            critic.backward(sac_critic_loss_grad(q[-1:], y)[0][:, None], cache)  # ∂J_Q/∂φᵢ into the flat gradient
        critic_loss = sac_critic_loss(q, y)
        # Adam on φ, and the Polyak step in the same pass (the target critics are not read again)
        sums = sums | _adam(opt["critic"], self.flat["critics"], self.flat["critics_target"], tau)
        fwd = self._q(self.critics, obs, a_pi)  # critics after their step
        q_pi = np.stack([o[:, 0] for o, _ in fwd])  # (n, B)
        # (B,) the critic attaining the min gets the whole gradient; on a tie the first one, as torch's
        # min(dim=0) (its backward routes through the returned index, which is the first minimum)
        k, q_min = q_pi.argmin(axis=0), q_pi.min(axis=0)
        actor_loss = sac_actor_loss(logp, q_min, alpha)
        g_logp, g_q = sac_actor_loss_grad(logp, q_min, alpha)
        d, g_a = obs.shape[1], np.empty_like(a_pi)  # (B, d) ∂J_π/∂ã
        for i, (critic, (_, cache)) in enumerate(zip(self.critics, fwd)):
            rows = np.flatnonzero(k == i)  # each sample back-propagates through its min critic only
            g_a[rows] = critic.input_grad(g_q[rows, None], cache, rows)[:, d:]
        self.actor.backward(head.backward(pi_cache, g_logp, g_a), actor_cache)
        # the sums of every buffer this step wrote last, taken in its Adam passes (the guard reads them)
        self.sums = sums | _adam(opt["actor"], self.flat["actor"])
        return actor_loss, critic_loss, -float(logp.sum()) / B, float(alpha), alpha_loss

    def verify(self) -> None:
        intact = all(flat_buffers_intact(self.flat[k], v) for k, v in self._grad_views.items())
        if not intact or self.actor.W[0].ctypes.data != self.net.actor[0].weight.data_ptr():
            raise RuntimeError(REPLACED)
