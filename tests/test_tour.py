"""`policylab tour`: every stage runs, the page embeds its figures, and a headless Chromium
opens it without errors with every image decoded."""

import base64
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from policylab.cli import main, tour

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless check needs Debian's chromium: apt-get install -y --no-install-recommends chromium")


def chromium_page_check(index: Path) -> dict:
    """Open ``index`` in headless Chromium, return the attributes the page's load script wrote."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", "--dump-dom", index.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tag = re.search(r'<div id="page-check"[^>]*>', proc.stdout)
    assert tag, "page-check marker missing from the DOM"
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag.group(0)))
    # the page writes nothing to the console, so any console line (--enable-logging) is a defect
    attrs["console_errors"] = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    return attrs


def check_page(out: Path, n_images: int):
    html = (out / "index.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == n_images
    for b64 in images:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "src=\"http" not in html and "<link" not in html  # self-contained
    return html


@pytest.fixture(scope="module")
def quick_tour(tmp_path_factory):
    out = tmp_path_factory.mktemp("tour")
    rc = main(["tour", "--quick", "--out", str(out)])
    return rc, out


STAGES = ["planning", "q-learning", "reinforce", "actor-critic", "ppo", "llm", "figures"]
N_IMAGES = 8  # 6 lecture figures + the REINFORCE gradient spread + the PPO learning curve


def test_quick_tour_meets_every_criterion(quick_tour):
    rc, out = quick_tour
    summary = json.loads((out / "summary.json").read_text())
    statuses = {k: v["status"] for k, v in summary["stages"].items()}
    assert list(statuses) == STAGES
    assert rc == 0, summary["stages"]
    assert all(s == "ok" for s in statuses.values()), summary["stages"]
    assert all(v["criterion"].startswith("PASS: ") for v in summary["stages"].values())
    assert summary["q_star"]["0.9"][0] == pytest.approx([0.729, 0.81])
    assert summary["q_learning"]["max_abs_error"] < 0.05 and summary["q_learning"]["greedy_matches"]
    assert summary["reinforce"]["variance_ratio"] <= 0.5 and max(summary["reinforce"]["max_z"].values()) <= 4
    assert summary["actor_critic"]["eval_after"] >= tour.QUICK.ac_target
    assert min(summary["ppo"]["eval_mean"]) >= 475
    llm = summary["llm"]
    assert llm["grpo_accuracy"] - llm["sft_accuracy"] >= tour.GRPO_MARGIN
    assert llm["dpo_preference_accuracy"][1] - llm["dpo_preference_accuracy"][0] >= 0.05
    assert len(summary["figures"]) == 12 and all(Path(f).stat().st_size > 0 for f in summary["figures"])
    assert (out / "runs" / "ppo-cartpole-s0" / "progress.csv").exists()
    html = check_page(out, n_images=N_IMAGES)
    for title in ("Planning", "Q-learning", "REINFORCE", "Actor-critic", "PPO", "Language models", "The lecture"):
        assert title in html
    assert html.count('class="criterion"') == len(STAGES) and "FAIL:" not in html


@needs_chromium
def test_quick_tour_page_opens_in_headless_chromium(quick_tour):
    _, out = quick_tour
    check = chromium_page_check(out / "index.html")
    assert check["state"] == "done"
    assert check["images-total"] == str(N_IMAGES) and check["images-loaded"] == str(N_IMAGES)
    assert check["errors"] == "0" and check["console_errors"] == []


def test_bad_seed_is_refused_before_any_stage(tmp_path, capsys):
    assert main(["tour", "--quick", "--seed", "-1", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr()
    assert "--seed" in err.err and "[1/" not in err.out and not (tmp_path / "t").exists()


def test_a_missed_criterion_is_red_and_exits_1(monkeypatch, tmp_path, capsys):
    from policylab.figures.report import Section

    def missed(out, cfg, args, summary):
        status, crit = tour._verdict(False, "return 12 ≥ 475")
        return Section("9. a stage", status, criterion=crit)

    monkeypatch.setattr(tour, "STAGES", [("planning", tour.stage_planning), ("missed", missed)])
    assert main(["tour", "--quick", "--out", str(tmp_path)]) == 1
    html = (tmp_path / "index.html").read_text()
    assert "FAIL: return 12 ≥ 475" in html and "#b3261e" in html and "1 of 2 stages missed" in html
    assert "failed stages: missed" in capsys.readouterr().out


def test_llm_stage_explains_how_to_install(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    args = type("A", (), {"no_llm": False, "seed": 0})()
    section = tour.stage_llm(tmp_path, tour.QUICK, args, {})
    assert section.status == "unavailable"
    assert "transformers is not installed" in section.paragraphs[0] and "pip install -e '.[llm]'" in section.paragraphs[0]


def test_a_failing_stage_is_reported_and_exits_1(monkeypatch, tmp_path, capsys):
    def broken(out, cfg, args, summary):
        raise RuntimeError("boom in stage")

    monkeypatch.setattr(tour, "STAGES", [("planning", tour.stage_planning), ("broken", broken)])
    assert main(["tour", "--quick", "--out", str(tmp_path)]) == 1
    html = (tmp_path / "index.html").read_text()
    assert "RuntimeError: boom in stage" in html and ">failed<" in html
    assert "failed stages: broken" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stages"]["broken"]["status"] == "failed" and summary["stages"]["planning"]["status"] == "ok"


@pytest.mark.slow
def test_full_tour(tmp_path):
    """The README's first command: every stage meets its criterion (about 75 s at low load)."""
    assert main(["tour", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["stages"]) == STAGES and not summary["quick"]
    assert all(v["status"] == "ok" and v["criterion"].startswith("PASS: ") for v in summary["stages"].values())
    assert summary["actor_critic"]["eval_after"] >= tour.FULL.ac_target
    assert summary["llm"]["grpo_accuracy"] - summary["llm"]["sft_accuracy"] >= tour.GRPO_MARGIN
    assert summary["q_learning"]["max_abs_error"] < 0.02
    assert len(summary["ppo"]["eval_mean"]) == 5 and min(summary["ppo"]["eval_mean"]) >= 475
    check_page(tmp_path, n_images=N_IMAGES)
    if CHROMIUM:
        check = chromium_page_check(tmp_path / "index.html")
        assert check["images-loaded"] == check["images-total"] == str(N_IMAGES) and check["errors"] == "0"
        assert check["console_errors"] == []
