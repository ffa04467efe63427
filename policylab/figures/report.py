"""A self-contained HTML report (``policylab tour``'s ``index.html``): sections with a status,
text, tables and figures embedded as base64 PNG (the page needs no other file to display).

A small script at the end of the page records, once everything has loaded, how many images
decoded (``naturalWidth > 0``) and how many script errors occurred, in the attributes of
``<div id="page-check">`` — what a headless-browser test reads back from the DOM.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Section", "write_html"]

STATUS_STYLE = {"ok": ("#e6f4ea", "#1e7b34"), "unavailable": ("#fff4e5", "#8a5300"),
                "failed": ("#fde7e9", "#b3261e")}


@dataclass
class Section:
    """One stage of the page. ``tables``: (caption, header, rows); ``images``: (PNG path, caption)."""

    title: str
    status: str = "ok"                        # ok | unavailable | failed
    paragraphs: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    images: list = field(default_factory=list)
    pre: str | None = None                    # preformatted text (a console log, a traceback)
    criterion: str | None = None              # "PASS: …" / "FAIL: …", shown green or red under the title


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#202124;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.status{font-size:.75em;padding:.15em .6em;border-radius:1em;margin-left:.6em;vertical-align:middle}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.92em} caption{text-align:left;font-weight:600;
padding:.2em 0;white-space:nowrap} th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left} figure{margin:1em 0} figure img{max-width:100%;
border:1px solid #eee} figcaption{font-size:.9em;color:#555} pre{background:#f6f8fa;padding:.8em;
overflow-x:auto;font-size:.85em} nav a{margin-right:1em}
.criterion{padding:.45em .8em;border-left:5px solid;border-radius:.2em;font-weight:600}
"""

_CHECK = """<div id="page-check" data-state="loading"></div>
<script>
var pageErrors = 0;
window.addEventListener("error", function () { pageErrors += 1; }, true);
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var c = document.getElementById("page-check");
  c.setAttribute("data-images-total", String(imgs.length));
  c.setAttribute("data-images-loaded", String(ok));
  c.setAttribute("data-errors", String(pageErrors));
  c.setAttribute("data-state", "done");
});
</script>"""


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(caption, header, rows) -> str:
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _image(path, caption) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(caption or Path(path).stem)
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">{cap}</figure>'


def _slug(i, title) -> str:
    return f"s{i}"


def write_html(path, title: str, sections: list[Section], intro: str = "") -> Path:
    """Write the page atomically (temp file + rename); returns its path."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    parts.append("<nav>" + "".join(f'<a href="#{_slug(i, s.title)}">{html.escape(s.title)}</a>'
                                   for i, s in enumerate(sections)) + "</nav>")
    for i, s in enumerate(sections):
        bg, fg = STATUS_STYLE.get(s.status, STATUS_STYLE["failed"])
        parts.append(f'<h2 id="{_slug(i, s.title)}">{html.escape(s.title)}<span class="status" '
                     f'style="background:{bg};color:{fg}">{html.escape(s.status)}</span></h2>')
        if s.criterion:
            parts.append(f'<p class="criterion" style="background:{bg};color:{fg};border-color:{fg}">'
                         f"{html.escape(s.criterion)}</p>")
        parts += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
        parts += [_table(*t) for t in s.tables]
        if s.pre:
            parts.append(f"<pre>{html.escape(s.pre)}</pre>")
        parts += [_image(p, c) for p, c in s.images]
    parts += [_CHECK, "</body></html>"]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".index.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    return out
