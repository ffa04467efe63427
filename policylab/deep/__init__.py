"""Deep RL on Gymnasium envs: REINFORCE, ActorCritic, A2C, PPO (on-policy); DQN, SAC (off-policy).

    from policylab.deep import PPO
    agent = PPO("CartPole-v1", seed=0, n_envs=8, n_steps=32)
    agent.learn(50_000, progress_bar=True)
    agent.evaluate(episodes=20).mean
    agent.act(obs, deterministic=True)
    agent.save("runs/cartpole"); agent = PPO.load("runs/cartpole")

Modules, one job each:

- ``agent.Agent``            the one base class: config, env, seeding, learn loop and its hooks,
                             ``collect_rollout``/``collect_transitions``, ``act``, ``evaluate``,
                             ``save``/``load`` (+ resume); ``load_agent``, ``EvalStats``.
- ``registry``               ALGORITHMS (name → "module:Class") and ``algorithm_class``: the CLI's
                             choices and the README's lists come from here.
- ``networks``               ``PolicyValueNet`` (MLP actor + MLP critic, orthogonal init), ``flatten_parameters``.
- ``distributions``          ``CategoricalHead`` / ``GaussianHead``: ``sample``, ``mode``, ``log_prob``, ``entropy``.
- ``storage``, ``replay``     ``RolloutStorage`` (T, N) for on-policy methods, ``ReplayBuffer`` for off-policy ones.
- ``dqn``, ``sac``            the off-policy algorithms (one file each; ``DQN.learn_offline`` fits a logged dataset).
- ``backend``                how the net computes (sample, value, loss_and_grad, step): ``TorchBackend``
                             (autograd) and ``make_backend("auto" | "numpy" | "torch")``.
- ``fast/``                  the numpy backend: numpy MLP mirror with numba kernels, numpy heads, Adam.
- ``vec_env``                ``make_vec_env``: env id | gymnasium.Env | ready VectorEnv → vector env.
- ``env_state``              JSON snapshot/restore of a vector env's RNGs and state (checkpoints).
- ``threads``                ``single_threaded_math`` (torch + BLAS pinned to one thread).
- ``vector_cartpole``        ``VectorCartPole``: numba CartPole-v1, bit-identical to Gymnasium's.
- ``config``                 typed config from kwargs / dict / YAML, rejects bad values early.

Where the math lives: returns and advantages in ``policylab.returns``, losses and diagnostics in
``policylab.losses`` (their numpy derivatives in ``policylab.losses.grads``).

An on-policy method (see ``a2c.py``/``ppo.py``; ≤ ~300 lines, top to bottom) — files to touch:
the new ``deep/<algo>.py``, one line in ``registry.ALGORITHMS``, a preset section, a test::

    @dataclass
    class MyConfig:                      # one field per hyperparameter, one-line doc, paper default
        n_envs: int = 1                  # read by Agent: n_envs, hidden_sizes, activation, log_std_init
        n_steps: int = 128               # rollout length T: Agent.make_storage allocates (T, N)
        learning_rate: float = 3e-4
        def validate(self): ...          # optional range checks (use config.check_fields)

    class MyAlgo(Agent):
        algo = "my-algo"                 # + "my-algo": "policylab.deep.my_algo:MyAlgo" in registry.ALGORITHMS
        config_class = MyConfig
        discrete_only = False            # True → Box action spaces rejected before any work
        uses_critic = True               # False → self.net.critic is None

        def setup(self):                 # optimizers go in self.optimizers (saved/restored by name)
            self.optimizers["main"] = torch.optim.Adam(self.net.parameters(), self.config.learning_rate)

        def update(self) -> dict:        # after collect(): a rollout of T steps of N envs in self.storage
            # advantages: policylab.returns.gae / discounted_returns / td_errors over storage arrays
            # loss:       policylab.losses.* on self.head.log_prob_entropy(self.net.policy_params(obs), a)
            # schedules:  self.progress_remaining goes 1 → 0 over learn(total_steps)
            return {"losses/policy_loss": ..., ...}   # STANDARD_KEYS in policylab.io.logger

An off-policy method (DQN, SAC) — files to touch: the new ``deep/<algo>.py``, one registry line, a
preset section, a test. Override the storage, the collection step and the update schedule::

    class MyOffPolicy(Agent):
        def build_net(self): ...         # e.g. Q-networks + target copies, all inside one nn.Module
        def make_storage(self):          # replay.ReplayBuffer instead of a rollout
            return ReplayBuffer(c.buffer_size, self.obs_dim, self.head.action_shape, self.head.discrete,
                                n_envs=self.n_envs, gamma=c.gamma, seed=self.seed)
        def explore(self, obs):          # behaviour policy: ε-greedy, or a ~ π(·|s) (the default)
            ...
        def collect(self):               # train_freq env steps per env per iteration
            self.collect_transitions(self.storage, self.config.train_freq)
        def update(self) -> dict:        # gradient_steps minibatches per iteration, after learning_starts
            if self.num_steps < self.config.learning_starts: return {}
            for _ in range(self.config.gradient_steps):
                batch = self.storage.sample(self.config.batch_size)   # ReplaySample of (B, ...) arrays
                ...

Anything random must draw from ``self.torch_rng`` (torch) or ``self.np_rng`` (numpy) so that
save → load → learn continues with identical numbers. Ready vector envs (e.g. ``VectorCartPole``)
must follow Gymnasium's vector API with ``autoreset_mode=SAME_STEP`` in ``metadata`` and put the
last observation of a finished episode in ``info["final_obs"][i]`` (mask ``info["_final_obs"]``);
give them a ``spec`` with a registered id so ``evaluate``/``load`` can build a fresh copy (or pass
``env=`` to those).
"""

from __future__ import annotations

import importlib

__all__ = [
    "A2C",
    "ALGORITHMS",
    "DQN",
    "PPO",
    "REINFORCE",
    "SAC",
    "A2CConfig",
    "ActorCritic",
    "ActorCriticConfig",
    "Agent",
    "DQNConfig",
    "EvalStats",
    "PPOConfig",
    "REINFORCEConfig",
    "ReplayBuffer",
    "SACConfig",
    "load_agent",
    "make_vec_env",
]

_LAZY = {  # imported on first use: importing policylab.deep (e.g. for the registry) does not import torch
    "ALGORITHMS": "policylab.deep.registry",
    "Agent": "policylab.deep.agent", "EvalStats": "policylab.deep.agent", "load_agent": "policylab.deep.agent",
    "make_vec_env": "policylab.deep.vec_env",
    "PPO": "policylab.deep.ppo", "PPOConfig": "policylab.deep.ppo",
    "A2C": "policylab.deep.a2c", "A2CConfig": "policylab.deep.a2c",
    "REINFORCE": "policylab.deep.reinforce", "REINFORCEConfig": "policylab.deep.reinforce",
    "ActorCritic": "policylab.deep.actor_critic", "ActorCriticConfig": "policylab.deep.actor_critic",
    "DQN": "policylab.deep.dqn", "DQNConfig": "policylab.deep.dqn",
    "SAC": "policylab.deep.sac", "SACConfig": "policylab.deep.sac",
    "ReplayBuffer": "policylab.deep.replay",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'policylab.deep' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
