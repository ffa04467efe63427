"""The REINFORCE spread figure and the GRPO/DPO figure compute their numbers with the library, checked
against independent references: the exact policy gradient, closed forms of the advantages and the loss."""

import numpy as np
import pytest

from policylab import planning
from policylab.figures.gradients import reinforce_estimates, reinforce_spread_data
from policylab.mdp import catalog


def test_reinforce_estimates_are_unbiased_and_the_baseline_cuts_variance():
    d = reinforce_spread_data(episodes=3000, seed=1)
    live = d["live"]
    for k in ("none", "baseline"):
        z = np.abs(d["mean"][k] - d["exact"]) / np.maximum(d["stderr"][k], 1e-12)
        assert z[live].max() < 4.5, k
    assert d["total_variance"]["baseline"] < 0.5 * d["total_variance"]["none"]
    np.testing.assert_allclose(d["exact"], planning.exact_policy_gradient(catalog.line_world(3, gamma=0.9),
                                                                          d["logits"]))


def test_one_episode_estimate_by_hand():
    """Deterministic line world, π = 'right' with probability ~1: the episode s1→s2→s3→G is known."""
    mdp = catalog.line_world(3, gamma=0.9)
    logits = np.tile([-30.0, 30.0], (4, 1))
    g = reinforce_estimates(mdp, logits, episodes=1, seed=0)[0]       # (S, A)
    # ĝ(s_t, ·) = γ^t G_t (e_right − π) ≈ 0 because π(right) ≈ 1: the score vanishes
    assert np.abs(g).max() < 1e-10
    logits = np.zeros((4, 2))
    g = reinforce_estimates(mdp, logits, episodes=2000, seed=0).mean(axis=0)
    assert np.abs(g - planning.exact_policy_gradient(mdp, logits))[:3].max() < 0.02


def test_preference_figure_numbers():
    pytest.importorskip("torch")
    from policylab.figures.preference import preference_losses_data

    d = preference_losses_data()
    np.testing.assert_allclose(d["advantages"], d["rewards"] - d["rewards"].mean(axis=1, keepdims=True))
    for b, loss in d["dpo_loss"].items():
        np.testing.assert_allclose(loss, np.log1p(np.exp(-b * d["delta"])), rtol=1e-9)   # −log σ(βΔ)
    assert d["dpo_loss"][0.1][100] == pytest.approx(np.log(2))


def test_bradley_terry_figure_numbers(tmp_path):
    pytest.importorskip("torch")
    from policylab.figures.preference import bradley_terry

    res = bradley_terry(tmp_path)
    d = res.data
    np.testing.assert_allclose(d["p_prefer"], 1 / (1 + np.exp(-d["delta"])), rtol=1e-12)
    for m, loss in d["loss"].items():
        np.testing.assert_allclose(loss, np.log1p(np.exp(-(d["delta"] - m))), rtol=1e-9)   # −log σ(Δr − m)
    assert d["loss"][0.0][60] == pytest.approx(np.log(2))                                # Δr = 0
    assert res.png.stat().st_size > 0
