"""Planning when the model is known: Bellman operators, policy evaluation, value and policy iteration."""

from policylab.planning.bellman import (
    bellman_expectation_backup,
    bellman_optimality_backup,
    bellman_optimality_backup_q,
    greedy_policy,
    policy_matrix,
    policy_model,
    q_from_v,
)
from policylab.planning.evaluation import evaluate_policy
from policylab.planning.iteration import (
    PlanningResult,
    modified_policy_iteration,
    policy_iteration,
    proper_policy,
    value_iteration,
)
from policylab.planning.policy_gradient import (
    discounted_visitation,
    exact_policy_gradient,
    softmax_policy,
)

__all__ = [
    "PlanningResult",
    "bellman_expectation_backup",
    "bellman_optimality_backup",
    "bellman_optimality_backup_q",
    "discounted_visitation",
    "evaluate_policy",
    "exact_policy_gradient",
    "greedy_policy",
    "modified_policy_iteration",
    "policy_iteration",
    "policy_matrix",
    "policy_model",
    "proper_policy",
    "q_from_v",
    "softmax_policy",
    "value_iteration",
]
