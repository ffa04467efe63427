"""Drawing primitives shared by the lecture's figures: lazy matplotlib (Agg), saving PNG + SVG at a
fixed pixel size, and the Sutton & Barto backup-diagram vocabulary (open circle = state, filled dot
= action, filled square = terminal state, arc = max).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DPI = 150
STATE_R = 0.28     # state circle radius (data units; axes use equal aspect)
ACTION_R = 0.085   # action dot radius
HIGHLIGHT = "#d62728"
SOFT = "#9e9e9e"


@dataclass
class FigureResult:
    """One rendered figure: the numbers it drew (``data``) and the files written (PNG, SVG)."""

    name: str                      # file stem, e.g. "fig4_line_world_q_star"
    title: str
    caption: str
    data: Any
    size_px: tuple[int, int]       # (width, height) of the PNG
    files: list[Path] = field(default_factory=list)

    @property
    def png(self) -> Path | None:
        return next((f for f in self.files if f.suffix == ".png"), None)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def new_figure(width_in: float, height_in: float, **kw):
    plt = pyplot()
    return plt.figure(figsize=(width_in, height_in), dpi=DPI, **kw)


def finish(fig, name: str, title: str, caption: str, data, out_dir=None) -> FigureResult:
    """Save ``fig`` as ``<out_dir>/<name>.png`` and ``.svg`` (fixed size: no tight bbox) and close it."""
    result = FigureResult(name, title, caption, data, tuple(fig.canvas.get_width_height()))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "svg"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=DPI, format=ext, metadata=None if ext == "png" else {"Date": None})
            result.files.append(path)
    pyplot().close(fig)
    return result


def diagram_axes(fig, rect, xlim, ylim, title=None):
    """Axes for a node diagram: equal aspect, no frame, given data limits."""
    ax = fig.add_axes(rect)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=11)
    return ax


def state(ax, xy, label=None, terminal=False, r=STATE_R, color="black", fontsize=9, lw=1.4):
    """Open circle (state) or filled grey square (terminal state); returns the patch."""
    from matplotlib.patches import Circle, Rectangle

    if terminal:
        patch = Rectangle((xy[0] - r, xy[1] - r), 2 * r, 2 * r, facecolor="#555555", edgecolor=color, lw=lw,
                          zorder=3)
    else:
        patch = Circle(xy, r, facecolor="white", edgecolor=color, lw=lw, zorder=3)
    ax.add_patch(patch)
    if label:
        ax.text(xy[0], xy[1], label, ha="center", va="center", fontsize=fontsize, zorder=4,
                color="white" if terminal else "black")
    return patch


def action(ax, xy, r=ACTION_R, color="black"):
    """Filled dot (action node); returns the patch."""
    from matplotlib.patches import Circle

    patch = Circle(xy, r, facecolor=color, edgecolor=color, zorder=3)
    ax.add_patch(patch)
    return patch


def link(ax, p0, p1, r0=0.0, r1=0.0, label=None, arrow=True, color="black", side=1, fontsize=8,
         label_at=0.5, offset=0.12, lw=1.2, label_color=None, ha=None, box=False):
    """Straight edge between node centres p0 → p1, clipped at radii r0, r1, with an optional label
    placed ``offset`` to the side (+1 left of the direction of travel, −1 right)."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    d = math.hypot(dx, dy)
    ux, uy = dx / d, dy / d
    start = (p0[0] + ux * r0, p0[1] + uy * r0)
    end = (p1[0] - ux * r1, p1[1] - uy * r1)
    ax.annotate("", xy=end, xytext=start, zorder=2,
                arrowprops={"arrowstyle": "-|>" if arrow else "-", "color": color, "lw": lw,
                                "shrinkA": 0, "shrinkB": 0, "mutation_scale": 10})
    if label:
        mx, my = start[0] + (end[0] - start[0]) * label_at, start[1] + (end[1] - start[1]) * label_at
        nx, ny = -uy * side, ux * side
        if ha is None:
            ha = "center" if abs(nx) < 0.3 else ("left" if nx > 0 else "right")
        ax.text(mx + nx * offset, my + ny * offset, label, fontsize=fontsize, ha=ha, va="center",
                color=label_color or color, zorder=7 if box else 5,
                bbox={"boxstyle": "round,pad=0.08", "fc": "white", "ec": "none", "alpha": 0.9} if box else None)


def max_arc(ax, centre, left, right, radius=0.45, label="max", fontsize=8):
    """The S&B 'max' arc across the edges centre→left and centre→right, below ``centre``."""
    from matplotlib.patches import Arc

    a1 = math.degrees(math.atan2(left[1] - centre[1], left[0] - centre[0]))
    a2 = math.degrees(math.atan2(right[1] - centre[1], right[0] - centre[0]))
    lo, hi = min(a1, a2), max(a1, a2)
    ax.add_patch(Arc(centre, 2 * radius, 2 * radius, theta1=lo, theta2=hi, lw=1.3, zorder=2))
    mid = math.radians((lo + hi) / 2)
    ax.text(centre[0] + (radius + 0.05) * math.cos(mid), centre[1] + (radius + 0.05) * math.sin(mid) - 0.08,
            label, fontsize=fontsize, ha="center", va="top", style="italic")


def fmt(x: float, digits: int = 3) -> str:
    """Compact number for labels: 0.9, 0.729, 1, −0.12."""
    s = f"{x:.{digits}g}"
    return s.replace("-", "−")
