"""The lecture's six figures from the library's own numbers, and learning curves with
stratified-bootstrap confidence intervals.

    from policylab import figures
    res = figures.fig4("figures/")          # PNG + SVG; res.data == {γ: Q*} from planning
    figures.fig4_data()[0.9]                # the numbers alone (no matplotlib)
    figures.render_all("figures/")          # all six
    figures.iqm(scores); figures.stratified_bootstrap_ci(scores, figures.iqm, reps=2000, alpha=0.05, seed=0)

matplotlib (Agg backend) is imported when a figure is drawn, not when this package is imported.
"""

from __future__ import annotations

from policylab.errors import InputError
from policylab.figures._draw import FigureResult
from policylab.figures.backups import fig3, fig3_data, fig5, fig5_data
from policylab.figures.lecture import (
    fig1,
    fig1_data,
    fig2,
    fig2_data,
    fig4,
    fig4_data,
    fig6,
    fig6_data,
)
from policylab.figures.stats import AGGREGATES, iqm, mean, stratified_bootstrap_ci

__all__ = [
    "AGGREGATES",
    "FIGURES",
    "FigureResult",
    "fig1",
    "fig1_data",
    "fig2",
    "fig2_data",
    "fig3",
    "fig3_data",
    "fig4",
    "fig4_data",
    "fig5",
    "fig5_data",
    "fig6",
    "fig6_data",
    "iqm",
    "mean",
    "render_all",
    "stratified_bootstrap_ci",
]

#: Figure number → drawing function ``figN(out_dir=None, **kw) -> FigureResult``.
FIGURES = {1: fig1, 2: fig2, 3: fig3, 4: fig4, 5: fig5, 6: fig6}


def render_all(out_dir, which=None, progress: bool = False) -> list[FigureResult]:
    """Draw figures ``which`` (default all six) into ``out_dir`` as PNG + SVG; returns their results."""
    from tqdm.auto import tqdm

    which = sorted(FIGURES) if which is None else list(which)
    bad = [n for n in which if n not in FIGURES]
    if bad:
        raise InputError(f"no figure {bad[0]}: choose from {sorted(FIGURES)}")
    return [FIGURES[n](out_dir) for n in tqdm(which, desc="figures", unit="fig", disable=not progress)]
