"""The documentation site builds with ``mkdocs build --strict`` (every example on it runs, every
cross-reference resolves) and every page opens in headless Chromium, served from localhost with
every other host unresolvable, without a console error and with every image decoded."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from test_tour import CHROMIUM

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                                reason="docs extra not installed: pip install -e '.[docs]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, MPLBACKEND="Agg", NO_MKDOCS_2_WARNING="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(out)], check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_site_builds_strict_with_every_page(site):
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("index.html"))
    for want in ("index.html", "install/index.html", "lecture/mdp/index.html", "lecture/planning/index.html",
                 "lecture/tabular/index.html", "lecture/policy-gradients/index.html", "lecture/grpo/index.html",
                 "lecture/dpo/index.html", "lecture/reward-models/index.html", "howto/own-env/index.html", "howto/resume/index.html",
                 "howto/plot-seeds/index.html", "howto/llm-own-model/index.html", "howto/benchmarks/index.html",
                 "howto/benchmark-history/index.html",
                 "reference/api/index.html", "reference/cli/index.html"):
        assert want in pages
    html = {p: (site / p).read_text() for p in pages}
    assert not [p for p, h in html.items() if "Traceback (most recent call last)" in h]
    # examples ran at build time: their printed output is on the page
    assert re.search(r"variance with / without the baseline: 0\.[0-4]\d", html["lecture/policy-gradients/index.html"])
    assert "resumed weights equal uninterrupted ones: True" in html["howto/resume/index.html"]
    assert re.search(r"greedy evaluation: return [\d.]+, episode length \d+ \(shortest path: 9\)",
                     html["howto/own-env/index.html"])
    assert "3 steps; last:" in html["howto/llm-own-model/index.html"]
    assert re.search(r"mean return of 20 greedy episodes: [\d.]+", html["lecture/policy-gradients/index.html"])
    # every lecture page shows its equation (MathML, rendered at build time) and a figure or example
    for p in [p for p in pages if p.startswith("lecture/")]:
        assert "<math" in html[p], p
    assert html["reference/cli/index.html"].count("usage: policylab") >= 10
    acc = re.search(r"held-out preference accuracy (0\.\d+) → (0\.\d+)", html["lecture/reward-models/index.html"])
    assert acc and float(acc[2]) >= float(acc[1]) + 0.2, acc     # the reward model learned the preferences
    assert "rewards/reward_model" in html["lecture/reward-models/index.html"]    # and scored GRPO's completions
    cli = html["reference/cli/index.html"]
    for words in ("train", "llm reward", "sweep", "tour", "plot"):
        assert f"usage: policylab {words}" in cli, words
    assert "dqn" in cli and "sac" in cli
    api = html["reference/api/index.html"]
    for name in ("policylab.planning.value_iteration", "policylab.deep.dqn.DQN", "policylab.deep.sac.SAC",
                 "policylab.deep.normalize", "policylab.llm.reward.RewardTrainer", "policylab.sweep",
                 "policylab.losses.bradley_terry_loss"):
        assert name in api, name
    assert len(list((site / "figures").glob("*.png"))) == 9


def test_every_python_example_on_the_site_runs_at_build_time():
    """A ```python block without exec="on" would be an example nobody runs: there are none."""
    plain = [f"{p.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}" for p in sorted((ROOT / "docs").rglob("*.md"))
             for text in [p.read_text()] for m in re.finditer(r"^```python(?![^\n]*exec=\"on\")", text, re.MULTILINE)]
    assert plain == []


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_every_page_loads_offline_in_headless_chromium(site):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        pages = sorted(p.relative_to(site).parent.as_posix() for p in site.rglob("index.html"))
        for page in pages:
            url = f"http://127.0.0.1:{port}/{'' if page == '.' else page + '/'}"
            with tempfile.TemporaryDirectory() as profile:
                proc = subprocess.run(
                    [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--enable-logging=stderr", "--v=0",
                     "--virtual-time-budget=5000", "--dump-dom", url],
                    capture_output=True, text=True, timeout=120, check=False)
            assert proc.returncode == 0, (page, proc.stderr[-2000:])
            tag = re.search(r'<div id="page-check"[^>]*>', proc.stdout)
            assert tag, f"{page}: the page-check script did not run"
            attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag.group(0)))
            # the pages write nothing to the console: any console line (console.error prints no level) is a defect
            console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
            assert attrs["errors"] == "0" and console == [], (page, attrs, console)
            assert attrs["images-loaded"] == attrs["images-total"], (page, attrs)
            if page.startswith("lecture/"):
                assert int(attrs["math"]) >= 1, (page, attrs)
            if page.startswith("lecture/"):
                assert int(attrs["images-total"]) >= 1, (page, attrs)     # every lecture page has its figure
    finally:
        server.shutdown()
