"""One-step online actor-critic (lecture §6.3; Sutton & Barto §13.5 without the γ^t factor).

After every environment step (s_t, a_t, r_{t+1}, s_{t+1}), the lecture's three-step update:

    1. δ_t = r_{t+1} + γ V_w(s_{t+1}) − V_w(s_t)        (V_w(terminal) = 0; a time-limit
                                                        truncation bootstraps from V_w(final obs))
    2. critic:  w ← w + α_w δ_t ∇_w V_w(s_t)
    3. actor:   θ ← θ + α_θ δ_t ∇_θ log π_θ(a_t|s_t)

Both steps use the δ_t and the parameters from before the update: one backward pass of
``losses.actor_critic_loss`` (whose gradients are exactly −δ∇V and −δ∇log π) followed by one
optimizer step with two parameter groups (separate actor and critic networks, step sizes α_θ, α_w). With
``n_envs`` = N > 1 each update averages the N simultaneous transitions. Plain SGD is the
lecture's rule; Adam (the default) is the same update with adaptive step sizes.
Discrete and continuous actions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from policylab.deep.agent import Agent
from policylab.deep.config import AgentOptions, check, check_fields
from policylab.deep.networks import flatten_parameters
from policylab.losses import actor_critic_loss, entropy_bonus, explained_variance
from policylab.returns import td_errors

__all__ = ["ActorCritic", "ActorCriticConfig"]

_OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


@dataclass
class ActorCriticConfig(AgentOptions):
    """One-step actor-critic hyperparameters (the lecture gives none; these are CartPole-sized)."""

    n_envs: int = 1                        # transitions per update (1: the lecture's fully online rule)
    actor_learning_rate: float = 3e-4      # actor step size α_θ
    critic_learning_rate: float = 1e-3     # critic step size α_w
    optimizer: str = "adam"                # adam | sgd (plain SGD is the lecture's update rule)
    gamma: float = 0.99                    # discount γ
    ent_coef: float = 0.0                  # entropy bonus (0: the lecture's update)
    max_grad_norm: float | None = None     # global gradient-norm clip (None: off)
    steps_per_iteration: int = 256         # online updates between two log rows
    hidden_sizes: tuple[int, ...] = (64, 64)  # MLP widths of actor and critic
    activation: str = "tanh"               # hidden activation: tanh | relu | elu
    log_std_init: float = 0.0              # initial log σ of the Gaussian head (continuous actions)

    def validate(self) -> None:
        check_fields(self, at_least_one=("n_envs", "steps_per_iteration"), unit=("gamma",),
                     positive=("actor_learning_rate", "critic_learning_rate"), nonnegative=("ent_coef",),
                     positive_or_none=("max_grad_norm",), widths=("hidden_sizes",))
        check(self.optimizer in _OPTIMIZERS, "optimizer", self.optimizer, f"one of {sorted(_OPTIMIZERS)}")


class ActorCritic(Agent):
    """``ActorCritic(env, seed=0, **hyperparameters)``; see :class:`ActorCriticConfig`."""

    algo = "actor-critic"
    config_class = ActorCriticConfig

    def setup(self) -> None:
        c = self.config
        # actor θ and critic w each in one flat buffer: the per-step optimizer costs two kernels
        self.flat_params = [flatten_parameters(nn.ParameterList(self.net.actor_parameters())),
                            flatten_parameters(self.net.critic)]
        groups = [{"params": [self.flat_params[0]], "lr": c.actor_learning_rate},   # α_θ
                  {"params": [self.flat_params[1]], "lr": c.critic_learning_rate}]  # α_w
        self.optimizers["main"] = _OPTIMIZERS[c.optimizer](groups, foreach=True)

    def _train_iteration(self, total_steps: int) -> dict:
        c, net, head = self.config, self.net, self.head
        opt = self.optimizers["main"]  # one optimizer, two parameter groups (α_θ, α_w)
        stats = np.zeros((c.steps_per_iteration, 3))  # policy loss, value loss, entropy
        v_seen, g_seen = [], []
        obs = self._obs
        for k in range(c.steps_per_iteration):
            # ---- act: a_t ~ π_θ(·|s_t), keeping log π_θ(a_t|s_t) for the actor step ------------------
            obs_t = torch.from_numpy(obs)  # (N, obs_dim)
            pparams = net.policy_params(obs_t)
            with torch.no_grad():
                action = head.sample(pparams, self.torch_rng)  # (N,) or (N, d)
            logp, entropy = head.log_prob_entropy(pparams, action)  # (N,)
            # s_tp1: the true s_{t+1} (the final observation where an episode ended)
            next_obs, r, term, _, s_tp1 = self.step_env(action.numpy())

            # ---- 1. TD error δ_t = r + γ(1 − terminated) V(s_{t+1}) − V(s_t) -------------------------
            v_both = net.value(torch.from_numpy(np.concatenate([obs, s_tp1])))  # (2N,)
            v_t, v_tp1 = v_both[: self.n_envs], v_both[self.n_envs:].detach()  # V(s_t) keeps the graph
            delta = td_errors(torch.as_tensor(r, dtype=torch.float32)[None], c.gamma, v_t.detach()[None],
                              v_tp1[None], terminated=torch.as_tensor(term)[None])[0]  # (N,)

            # ---- 2.+3. critic step w += α_w δ ∇V(s_t), actor step θ += α_θ δ ∇log π(a_t|s_t) ----------
            loss = actor_critic_loss(logp, delta, v_t)
            if c.ent_coef:
                loss = loss + c.ent_coef * entropy_bonus(entropy)
            for flat in self.flat_params:
                flat.grad.zero_()
            loss.backward()
            if c.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.flat_params, c.max_grad_norm)
            opt.step()  # both steps at once, from the same pre-update parameters and δ_t

            stats[k] = [-(logp * delta).mean().item(), 0.5 * (delta**2).mean().item(),
                        entropy.mean().item()]
            v_seen.append(v_t.detach().numpy())
            g_seen.append((v_t.detach() + delta).numpy())  # the TD target r + γV(s')
            self.num_steps += self.n_envs
            obs = next_obs
            if self.num_steps >= total_steps:
                stats = stats[: k + 1]
                break
        self._obs = obs

        # ---- logging --------------------------------------------------------------------------------
        pg, vl, ent = stats.mean(0)
        return {
            "losses/policy_loss": pg, "losses/value_loss": vl, "losses/entropy": ent,
            "losses/explained_variance": explained_variance(np.concatenate(v_seen), np.concatenate(g_seen)),
            "charts/learning_rate": c.actor_learning_rate,
        }
