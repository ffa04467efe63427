"""REINFORCE, actor-critic and PPO losses (filled in by the policy-gradient work)."""

__all__: list[str] = []
