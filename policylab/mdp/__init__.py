"""The MDP tuple (S, A, P, R, γ): model and validation, built-in catalog, Gymnasium bridge."""

from policylab.mdp import catalog
from policylab.mdp.gym_bridge import MDPEnv, from_gymnasium
from policylab.mdp.model import ROW_SUM_TOL, TabularMDP

__all__ = ["ROW_SUM_TOL", "MDPEnv", "TabularMDP", "catalog", "from_gymnasium"]
