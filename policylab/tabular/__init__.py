"""Tabular learning from interaction (model unknown): Monte Carlo and TD(0) prediction,
SARSA, expected SARSA and Q-learning, with schedules and a compiled (numba) fast path.

    from policylab import tabular
    from policylab.mdp import catalog
    res = tabular.q_learning(catalog.line_world(), steps=10_000, alpha=0.1, epsilon=0.2)
    res.Q, res.policy, res.episode_returns
    # from logged transitions (s, a, r, s_next, terminated), no env interaction:
    res = tabular.q_learning_from_transitions(mdp, data)
"""

from policylab.tabular.inputs import MAX_STEPS
from policylab.tabular.monte_carlo import MCConfig, mc_prediction
from policylab.tabular.offline import q_learning_from_transitions
from policylab.tabular.result import TRACE_DTYPE, TabularResult, write_trace
from policylab.tabular.schedules import (
                                         Schedule,
                                         as_schedule,
                                         constant,
                                         exponential,
                                         inverse_count,
                                         linear,
                                         parse_schedule,
)
from policylab.tabular.td import TDConfig, expected_sarsa, q_learning, sarsa, td0_prediction
from policylab.tabular.updates import (
                                         bootstrap_discount,
                                         epsilon_greedy_expectation,
                                         expected_sarsa_target,
                                         incremental_update,
                                         q_learning_target,
                                         return_step,
                                         sarsa_target,
                                         td_error,
                                         td_target,
)

__all__ = [
                                         "MAX_STEPS",
                                         "TRACE_DTYPE",
                                         "MCConfig",
                                         "Schedule",
                                         "TDConfig",
                                         "TabularResult",
                                         "as_schedule",
                                         "bootstrap_discount",
                                         "constant",
                                         "epsilon_greedy_expectation",
                                         "expected_sarsa",
                                         "expected_sarsa_target",
                                         "exponential",
                                         "incremental_update",
                                         "inverse_count",
                                         "linear",
                                         "mc_prediction",
                                         "parse_schedule",
                                         "q_learning",
                                         "q_learning_from_transitions",
                                         "q_learning_target",
                                         "return_step",
                                         "sarsa",
                                         "sarsa_target",
                                         "td0_prediction",
                                         "td_error",
                                         "td_target",
                                         "write_trace",
]
