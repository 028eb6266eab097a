"""The review report (medvit.evaluate.review): content from a real evaluate run, issue #14's files, escaping."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
from pathlib import Path
from typing import Callable

import markupsafe
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from medvit.cli import main
from medvit.data.manifest import read_manifest
from medvit.data.scores import write_scores
from medvit.evaluate.review import ReviewContext, render_review_report, weights_licence
from medvit.models.classifier import build_classifier, save_classifier

BASELINES = ("clip_zeroshot",)
EVIL = "<script>alert('x')</script>"
# Files of issue #14 that evaluate writes (medvit/evaluate/__init__.py), one marker text per section
ISSUE_FILES = {"subgroups.csv": "Subgroups", "demographics.csv": "Demographics per split",
               "label_prevalence.csv": "Label prevalence per split", "intervals.json": "Test metrics"}


def _ctx(domain: str = "satellite", **kw: object) -> ReviewContext:
    base = dict(domain=domain, registered_model=f"medvit-{domain}", version="7", intended_use="Triage research demo.",
                limitations="Synthetic data only.", lineage={"git_commit": "c0ffee", "params_hash": "ph1",
                                                             "data_hash": "dh1", "pipeline_id": "pid1"},
                run_links={"finetune": "http://127.0.0.1:5000/#/experiments/1/runs/r1"}, weights_sha256="ab" * 32,
                gate="passed: AUROC 0.9 >= 0.8")
    return ReviewContext(**{**base, **kw})  # type: ignore[arg-type]


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


@pytest.fixture
def evaluated(tiny_cache: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A real evaluate run (CLI) on a tiny cache, a fine-tuned model's scores and one baseline."""
    cache = tiny_cache(n_groups=40, per_group=2, seed=5, channels=4)
    m = read_manifest(cache)
    rng = np.random.default_rng(1)
    models, baselines = tmp_path / "models", tmp_path / "baselines"
    meta = {"model": "deit3_small_patch16_384", "img_size": 64, "in_chans": 4, "label_names": list(m.label_names),
            "head": {"hidden_dim": 16, "dropout": 0.0}, "mean": [0.45] * 4, "std": [0.25] * 4,
            "weights": "timm/deit3_base_patch16_384.fb_in22k_ft_in1k", "pipeline_id": "pid1", "run_id": "ft-run",
            "data_hash": m.digest(), "params_hash": "x", "freeze_blocks": 1,
            "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2}}
    save_classifier(build_classifier(meta), meta, models)
    for split in ("val", "test"):
        ids, y = m.split(split)["id"].tolist(), m.labels(split)
        write_scores(models / "scores" / f"{split}.csv", ids, np.clip(0.3 * y + 0.7 * rng.random(y.shape), 0, 1),
                     m.label_names)
        for b in BASELINES:
            write_scores(baselines / "scores" / b / f"{split}.csv", ids, rng.random(y.shape), m.label_names)
    (baselines / "meta.json").write_text(json.dumps({"baselines": {b: {"weights": "random-init"} for b in BASELINES},
                                                     "pipeline_id": "pid1", "run_id": "zs-run"}))
    doc = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())
    doc["evaluate"].update({"n_bootstrap": 50, "n_attention_maps": 0})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "reports"
    assert main(["evaluate", "--domain", "satellite", "--params", str(tmp_path / "params.yaml"), "--cache", str(cache),
                 "--finetune", str(models), "--baselines", str(baselines), "--out", str(out)]) == 0
    return {"out": out, "models": models, "cache": cache}


def test_report_from_a_real_evaluation(evaluated: dict[str, Path]) -> None:
    out = evaluated["out"]
    meta = json.loads((evaluated["models"] / "meta.json").read_text())
    page = render_review_report(out, meta, None, _ctx())
    text = _text(page)
    metrics = json.loads((out / "metrics.json").read_text())
    auroc = metrics["test/auroc_macro"]
    lo, hi = metrics["test/auroc_macro_ci_low"], metrics["test/auroc_macro_ci_high"]
    assert f"AUROC (macro) {auroc:.3f} [{lo:.3f}, {hi:.3f}]" in text
    diff = metrics["clip_zeroshot"]["test/auroc_macro_diff"]
    assert f"clip_zeroshot auroc_macro {metrics['clip_zeroshot']['test/auroc_macro']:.3f}" in text
    assert f"{diff:.3f}" in text
    # calibration: the reliability diagram evaluate drew, inlined byte for byte
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(uris[0]) == (out / "figures" / "roc.png").read_bytes()
    assert any(base64.b64decode(u) == (out / "figures" / "reliability.png").read_bytes() for u in uris)
    assert f"Expected calibration error (test): {metrics['test/ece_micro']:.3f}" in text
    # intended use, lineage, weights licence (timm's pretrained config), data sources said to be missing
    assert "Intended use. Triage research demo." in text and "Limitations. Synthetic data only." in text
    assert "git_commit c0ffee" in text and "pipeline_id pid1" in text and 'href="http://127.0.0.1:5000/' in page
    assert "licence apache-2.0" in text
    assert f"n samples {metrics['test/n_samples']:.0f} " in text and f"n groups {metrics['test/n_groups']:.0f} " in text
    assert "not available: no ingest report.json given to the register stage" in text
    # every issue #14 section is there: filled from evaluate's file, or "not available" naming it
    for name, section in ISSUE_FILES.items():
        assert section in text
        if not (out / name).exists():
            assert f"not available: reports/{name} not found" in text
    # self-contained: no scripts, no external resources
    assert "<script" not in page and "<link" not in page and not re.search(r'src="(?!data:)', page)


def test_missing_issue_files_say_not_available_and_fill_in(evaluated: dict[str, Path], tmp_path: Path) -> None:
    out = evaluated["out"]
    for name in ("subgroups.csv", "demographics.csv", "label_prevalence.csv", "intervals.json", "failures"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        (out / name).unlink(missing_ok=True)
    (out / "figures" / "subgroups_forest.png").unlink(missing_ok=True)
    text = _text(render_review_report(out, {"weights": "random-init"}, None, _ctx()))
    for name in ("subgroups.csv", "demographics.csv", "label_prevalence.csv",
                 "failures/failures.csv", "figures/subgroups_forest.png"):
        assert f"not available: {name if '/' in name else 'reports/' + name} not found" in text, name
    # without intervals.json, reliability comes from metrics.json's test/ci_reliable, else is "not available"
    metrics = json.loads((out / "metrics.json").read_text())
    expected = ("test CIs from" if "test/ci_reliable" in metrics else "not available: reports/intervals.json")
    assert expected in text
    assert "NOT PRETRAINED" in text and "licence none (random initialisation" in text

    # the same report once the files exist (layouts of medvit/evaluate/__init__.py)
    note = "Unreliable intervals: test CIs from 2 groups (< evaluate.min_groups = 10)"
    (out / "intervals.json").write_text(json.dumps({"n_groups": 2, "min_groups": 10, "reliable": False,
                                                    "note": note}))
    pd.DataFrame([
        {"model": "finetune", "attribute": "sex", "value": "F", "subgroup": "sex=F", "n": 40, "groups": 20,
         "prevalence": 0.3, "auroc": 0.71, "auroc_ci_low": 0.6, "auroc_ci_high": 0.8, "auroc_diff": -0.15,
         "auroc_diff_ci_low": -0.25, "auroc_diff_ci_high": -0.05, "interval": "ok", "flagged": 1,
         "flag_reason": "difference CI excludes 0"},
        {"model": "finetune", "attribute": "site", "value": "s-9f2", "subgroup": "site=s-9f2", "n": 6, "groups": 3,
         "prevalence": 0.5, "auroc": 0.9, "auroc_ci_low": None, "auroc_ci_high": None, "auroc_diff": 0.02,
         "interval": "too few groups for an interval (3 groups)", "flagged": 0, "flag_reason": ""},
    ]).to_csv(out / "subgroups.csv", index=False)
    pd.DataFrame([{"split": "test", "attribute": "sex", "value": "F", "count": 40, "fraction": 0.5},
                  {"split": "test", "attribute": "view", "value": "1", "count": 40, "fraction": 1.0}]).to_csv(
        out / "demographics.csv", index=False, float_format="%.6g")  # evaluate's format: 1.0 is written "1"
    pd.DataFrame([{"split": "train", "label": "a", "n": 80, "n_known": 78, "positives": 20, "prevalence": 0.2564}]
                 ).to_csv(out / "label_prevalence.csv", index=False)
    shutil.copy(out / "figures" / "roc.png", out / "figures" / "subgroups_forest.png")
    (out / "failures").mkdir()
    Image.fromarray(np.full((12, 12, 3), 200, np.uint8)).save(out / "failures" / "a_fp_1.png")  # an overlay
    pd.DataFrame([{"label": "a", "kind": "false_positive", "rank": 1, "id": "p-1a2b", "group": "g-77", "score": 0.93,
                   "threshold": 0.5, "image": "a_fp_1.png"},
                  {"label": "a", "kind": "false_negative", "rank": 1, "id": "p-3c4d", "group": "g-78", "score": 0.1,
                   "threshold": 0.5, "image": ""}]).to_csv(out / "failures" / "failures.csv", index=False)
    page = render_review_report(out, {"weights": "random-init"}, None, _ctx())
    text = _text(page)
    assert "not available" not in text.split("Data sources")[1].split("Calibration")[0].replace(
        "not available: no ingest", "")
    assert "Unreliable intervals: test CIs from 2 groups (< evaluate.min_groups = 10)" in text
    assert "Unreliable intervals: Unreliable" not in text
    assert "(unreliable)" in text
    diff_ci = re.search(r"fine-tuned minus baseline difference CI clip_zeroshot auroc_macro .*?\]( \(unreliable\))?"
                        r" [-0-9.]+ \[[-0-9., ]+\] \(unreliable\)", text)
    assert diff_ci, "baseline and paired-difference CIs carry the unreliable marking"
    assert "1 subgroup row(s) flagged" in text and 'class="flagged"' in page
    assert "sex F 40 20 0.300 0.710 [0.600, 0.800]" in text and "difference CI excludes 0" in text
    assert "too few groups for an interval (3 groups)" in text
    assert "test sex F 40 0.500" in text and "test view 1 40 1.000" in text and "train a 80 78 20 0.256" in text
    forest = (out / "figures" / "subgroups_forest.png").read_bytes()
    assert base64.b64encode(forest).decode() in page
    assert "false positive #1" in text and "id p-3c4d (group g-78)" in text and "no overlay drawn" in text
    overlay = base64.b64encode((out / "failures" / "a_fp_1.png").read_bytes()).decode()
    assert overlay in page  # satellite: images allowed

    # medical: the gallery's images only where pixels are allowed (local copy), withheld otherwise
    withheld = render_review_report(out, {"weights": "random-init"}, None, _ctx("medical"))
    assert overlay not in withheld and "medical images withheld" in withheld
    assert "false positive #1" in _text(withheld)
    assert overlay in render_review_report(out, {"weights": "random-init"}, None, _ctx("medical", include_pixels=True))


def test_ingest_report_data_sources_and_deid(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"n_input": 12, "n_ingested": 10, "n_rejected": 1, "n_filtered": 1, "n_samples": 10,
                                  "splits": {"train": 6, "val": 2, "test": 2}, "rejects_by_reason": {"unreadable": 1},
                                  "deid": {"key_source": "file:deid.key", "key_fingerprint": "fp12",
                                           "sources_pseudonymised": 10}}))
    text = _text(render_review_report(tmp_path / "reports", {}, report, _ctx("medical")))
    assert "n input 12" in text and "n ingested 10" in text and "splits train: 6, val: 2, test: 2" in text
    assert "key source file:deid.key" in text and "sources pseudonymised 10" in text
    assert "not available: reports/metrics.json not found" in text  # no evaluation: said, not omitted
    report.write_text(json.dumps({"n_input": 3, "n_ingested": 3}))
    assert "no de-identification block" in _text(render_review_report(tmp_path, {}, report, _ctx()))


def test_everything_is_escaped(evaluated: dict[str, Path]) -> None:
    out = evaluated["out"]
    per_label = pd.read_csv(out / "per_label.csv")
    per_label.loc[0, "label"] = EVIL
    per_label.to_csv(out / "per_label.csv", index=False)
    pd.DataFrame([{"model": "finetune", "attribute": "site", "value": '"><img src=x onerror=alert(1)>', "n": 4,
                   "groups": 2, "interval": "ok", "flagged": 0}]).to_csv(out / "subgroups.csv", index=False)
    page = render_review_report(out, {"weights": EVIL}, None, _ctx(intended_use=EVIL, limitations="<b>bold</b>"))
    assert "<script" not in page and "<img src=x" not in page and "<b>bold" not in page
    assert page.count(str(markupsafe.escape(EVIL))) == 4  # label, intended use, weights and its licence line
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_weights_licence() -> None:
    assert weights_licence("timm/deit3_base_patch16_384.fb_in22k_ft_in1k").startswith("apache-2.0")
    assert weights_licence("none").startswith("none")
    assert weights_licence("local:/models/mine.safetensors").startswith("unknown: local:/models/mine.safetensors")


def test_report_opens_in_headless_chromium(evaluated: dict[str, Path], tmp_path: Path) -> None:
    """Debian's chromium driven by playwright: no console error, no broken image, no request leaving the file."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium not found: `apt-get install chromium` (.ci/run installs it)"
    out = evaluated["out"]
    (out / "failures").mkdir(exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(out / "failures" / "a_fn_1.png")
    pd.DataFrame([{"label": EVIL, "kind": "false_negative", "rank": 1, "id": "p-9", "group": "g-9", "score": 0.2,
                   "threshold": 0.5, "image": "a_fn_1.png"}]).to_csv(out / "failures" / "failures.csv", index=False)
    path = tmp_path / "review_report.html"
    path.write_text(render_review_report(out, {"weights": "random-init"}, None, _ctx(intended_use=EVIL)))
    shot = tmp_path / "review_report.png"
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth])")
            scripts = page.evaluate("document.querySelectorAll('script').length")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert len(images) >= 4 and all(width > 0 for _, width in images), images  # ROC, PR, reliability, overlay
    assert any(alt.startswith(EVIL) for alt, _ in images)  # the escaped label came through as text
    assert scripts == 0
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and shot.stat().st_size > 1000
