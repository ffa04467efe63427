"""Deep policy-gradient methods on Gymnasium envs: REINFORCE, ActorCritic, A2C, PPO.

    from policylab.deep import PPO
    agent = PPO("CartPole-v1", seed=0, n_envs=8, n_steps=32)
    agent.learn(50_000, progress_bar=True)
    agent.evaluate(episodes=20).mean
    agent.act(obs, deterministic=True)
    agent.save("runs/cartpole"); agent = PPO.load("runs/cartpole")

Shared pieces (each lives once):

- ``networks.PolicyValueNet``  MLP actor (head parameters) + MLP critic V(s), orthogonal init.
- ``distributions``            ``CategoricalHead`` / ``GaussianHead`` (state-independent log-std):
                               ``sample``, ``mode``, ``log_prob``, ``entropy``, ``log_prob_entropy``.
- ``storage.RolloutStorage``    plain (T, N) arrays: obs, actions, logp, rewards, values,
                               next_values (V of the true next state; V(final obs) on truncation),
                               terminated, truncated. Advantages come from ``policylab.returns``.
- ``common.make_vec_env``       env id | gymnasium.Env | ready VectorEnv → vector env.
- ``common.Agent``              the one base class: config, env, seeding, learn loop (progress bar,
                               CSV/TensorBoard logs, checkpoints, callback), ``collect_rollout``,
                               ``act``, ``evaluate``, ``save``, ``load`` (+ resume).
- ``config.make_config``        typed config from kwargs / dict / YAML, rejects bad values early.
- ``analytic``                  numpy mirror of ``PolicyValueNet`` with a hand-written backward and
                               a compiled Adam step (PPO's ``backend="numpy"``).

How an algorithm file plugs in (see ``ppo.py`` / ``a2c.py``; ≤ ~300 lines, top to bottom)::

    @dataclass
    class MyConfig:                      # one field per hyperparameter, one-line doc, paper default
        n_envs: int = 1                  # read by Agent: n_envs, hidden_sizes, activation, log_std_init
        learning_rate: float = 3e-4
        def validate(self): ...          # optional range checks (use config.check)

    class MyAlgo(Agent):
        algo = "my-algo"                 # register "my-algo": "module:MyAlgo" in common.ALGORITHMS
        config_class = MyConfig
        discrete_only = False            # True → Box action spaces rejected before any work
        uses_critic = True               # False → self.net.critic is None

        def setup(self):                 # optimizers go in self.optimizers (saved/restored by name)
            self.optimizers["main"] = torch.optim.Adam(self.net.parameters(), self.config.learning_rate)

        def _train_iteration(self, total_steps) -> dict:
            # rollout:    self.collect_rollout(buf)  (advances self.num_steps, tracks episodes)
            #             or step the envs yourself from self._obs with self.step_env(actions)
            #             (normalization, episode counting) and add to self.num_steps
            # advantages: policylab.returns.gae / discounted_returns / td_errors over buf arrays
            # update:     policylab.losses.* on self.head.log_prob_entropy(self.net.policy_params(obs), a)
            # logging:    return {"losses/policy_loss": ..., ...}  (STANDARD_KEYS in policylab.io)

Anything random must draw from ``self.torch_rng`` (torch) or ``self.np_rng`` (numpy) so that
save → load → learn continues with identical numbers. Ready vector envs (e.g. a fast numpy
CartPole) must follow Gymnasium's vector API with ``autoreset_mode=SAME_STEP`` in ``metadata``
and put the last observation of a finished episode in ``info["final_obs"][i]`` (mask
``info["_final_obs"]``); give them a ``spec`` with a registered id so ``evaluate``/``load`` can
build a fresh copy (or pass ``env=`` to those).
"""

from __future__ import annotations

import importlib

from policylab.deep.common import ALGORITHMS, Agent, EvalStats, load_agent, make_vec_env

__all__ = [
    "A2C",
    "ALGORITHMS",
    "PPO",
    "REINFORCE",
    "A2CConfig",
    "ActorCritic",
    "ActorCriticConfig",
    "Agent",
    "EvalStats",
    "PPOConfig",
    "REINFORCEConfig",
    "load_agent",
    "make_vec_env",
]

_LAZY = {
    "PPO": "policylab.deep.ppo", "PPOConfig": "policylab.deep.ppo",
    "A2C": "policylab.deep.a2c", "A2CConfig": "policylab.deep.a2c",
    "REINFORCE": "policylab.deep.reinforce", "REINFORCEConfig": "policylab.deep.reinforce",
    "ActorCritic": "policylab.deep.actor_critic", "ActorCriticConfig": "policylab.deep.actor_critic",
}


def __getattr__(name):  # lazy: an algorithm module is imported on first use
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'policylab.deep' has no attribute {name!r}")
