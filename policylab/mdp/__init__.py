"""The MDP tuple (S, A, P, R, γ): model and validation, built-in catalog, Gymnasium bridge."""

from policylab.mdp import catalog
from policylab.mdp.gym_bridge import MDPEnv, from_gymnasium
from policylab.mdp.model import ROW_SUM_TOL, TabularMDP

__all__ = ["TabularMDP", "MDPEnv", "catalog", "from_gymnasium", "ROW_SUM_TOL"]
