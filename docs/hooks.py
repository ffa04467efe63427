"""Build hooks for the policylab site (mkdocs ``hooks:``).

- The lecture's figures (and the REINFORCE gradient spread) are drawn by the library at build time
  and added to the site as ``figures/<name>.png``: the pages always show what the code computes.
- Math written as ``$…$`` / ``$$…$$`` (pymdownx.arithmatex, generic mode) is converted to MathML
  with latex2mathml at build time, so pages render equations without JavaScript or a network.
"""

from __future__ import annotations

import html
import re
import tempfile
from pathlib import Path

from mkdocs.structure.files import File

_FIG_DIR = Path(tempfile.mkdtemp(prefix="policylab-docs-figs-"))
_MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.DOTALL)


def on_files(files, config):
    import os

    os.environ.setdefault("MPLBACKEND", "Agg")
    from policylab import figures
    from policylab.figures.gradients import reinforce_spread
    from policylab.figures.preference import bradley_terry, preference_losses

    results = figures.render_all(_FIG_DIR) + [reinforce_spread(_FIG_DIR, episodes=2000), preference_losses(_FIG_DIR),
                                              bradley_terry(_FIG_DIR)]
    for r in results:
        files.append(File.generated(config, f"figures/{r.png.name}", abs_src_path=str(r.png)))
    return files


def _to_mathml(match) -> str:
    from latex2mathml.converter import convert

    tag, body = match.group(1), html.unescape(match.group(2)).strip()
    display = tag == "div"
    tex = body[2:-2] if body[:2] in ("\\(", "\\[") else body.strip("$")
    aligned = re.fullmatch(r"\s*\\begin\{aligned\}(.*)\\end\{aligned\}\s*", tex, re.DOTALL)
    if display and aligned:  # latex2mathml has no aligned environment: one display block per row
        rows = [r.replace("&", "").strip() for r in re.split(r"\\\\", aligned.group(1)) if r.strip()]
        return "".join(convert(r, display="block") for r in rows)
    return convert(tex.strip(), display="block" if display else "inline")


def on_page_content(content, page, config, files):
    return _MATH.sub(_to_mathml, content)
