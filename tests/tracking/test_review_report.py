"""The review report in the registry: logged with the version, sha256 tag, `medvit review show` (real SQLite store)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Callable

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medvit.cli import main
from medvit.hashing import sha256_file
from medvit.tracking import registry
from medvit.tracking.report import REPORT_SHA_TAG, report_sha256

NAME = "medvit-medical"


def _overlay(report_dir: Path) -> str:
    """A failure case with an overlay PNG in evaluate's layout; returns the PNG's base64."""
    folder = report_dir / "failures"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((10, 10, 3), 90, np.uint8)).save(folder / "effusion_fp_1.png")
    pd.DataFrame([{"label": "effusion", "kind": "false_positive", "rank": 1, "id": "p-0a1b", "group": "g-1",
                   "score": 0.9, "threshold": 0.4, "image": "effusion_fp_1.png"}]).to_csv(folder / "failures.csv",
                                                                                          index=False)
    return base64.b64encode((folder / "effusion_fp_1.png").read_bytes()).decode()


@pytest.fixture
def registered(tracking: str, make_model: Callable[..., dict[str, Any]], make_report: Callable[..., Path],
               register: Callable[..., int], tmp_path: Path) -> dict[str, Any]:
    make_model()
    report_dir = make_report()
    overlay = _overlay(report_dir)
    cache = tmp_path / "data" / "cache" / "medical"  # register's default --cache (cwd is tmp_path)
    cache.mkdir(parents=True)
    (cache / "report.json").write_text(json.dumps({
        "n_input": 50, "n_ingested": 48, "n_rejected": 2, "deid": {"key_source": "env:MEDVIT_DEID_KEY",
                                                                  "sources_pseudonymised": 48}}))
    # the evaluate run that compared the fine-tuned model (TINY_META's run id) and names its zeroshot run
    client = registry.client()
    experiment = client.create_experiment(NAME, artifact_location=(tmp_path / "artifacts").as_uri())
    evaluate = client.create_run(experiment, tags={"stage": "evaluate", "finetune_run_id": "finetune-run",
                                                   "zeroshot_run_id": "zs-run-1",
                                                   "weights.clip_zeroshot": "hf-hub:laion/CLIP-ViT-B-32"}).info.run_id
    assert register(intended_use="Chest X-ray triage <research>", limitations="Tiny test set") == 0
    version = client.get_model_version(NAME, "1")
    return {"version": version, "evaluate": evaluate, "overlay": overlay,
            "logged": tmp_path / "registry" / "review_report.html",
            "local": report_dir / "review" / "review_report.html"}


def test_report_logged_with_the_version_and_its_sha256(registered: dict[str, Any], tmp_path: Path,
                                                      register: Callable[..., int]) -> None:
    v, logged = registered["version"], registered["logged"]
    digest = report_sha256(v)
    assert digest == v.tags[REPORT_SHA_TAG] == sha256_file(logged)
    stored = mlflow.artifacts.download_artifacts(run_id=v.run_id, artifact_path=v.tags["review_report"],
                                                 dst_path=str(tmp_path / "dl"))
    assert sha256_file(stored) == digest
    assert json.loads((tmp_path / "registry" / "registration.json").read_text())["review_report_sha256"] == digest
    page = logged.read_text()
    assert f"{NAME} version 1" in page and "Chest X-ray triage &lt;research&gt;" in page
    assert "env:MEDVIT_DEID_KEY" in page and "48" in page
    # lineage: the register run that created the version, the evaluate run found by the finetune run id
    assert f"register run id</th><td>{v.run_id}" in page and f"run {v.run_id} (experiment" in page
    assert "<td>clip_zeroshot</td><td>hf-hub:laion/CLIP-ViT-B-32</td><td>unknown: " in page  # baselines' weights
    assert f"evaluate run id</th><td>{registered['evaluate']}" in page and "zeroshot run id</th><td>zs-run-1" in page
    # medical pixels: in the local copy only (evaluate.upload_patient_pixels is false by default)
    assert registered["overlay"] not in page and "medical images withheld" in page
    assert registered["overlay"] in registered["local"].read_text()

    # an unchanged model registers nothing new and keeps the report it was logged with; the local copy is
    # written again (DVC removes the stage's outputs before it re-runs it)
    logged.unlink()
    registered["local"].unlink()
    assert register(intended_use="changed text") == 0
    again = registry.client().get_model_version(NAME, "1")
    assert report_sha256(again) == digest and sha256_file(logged) == digest
    assert "changed text" in registered["local"].read_text()
    assert len(registry.client().search_model_versions(f"name='{NAME}'")) == 1


def test_review_show_prints_downloads_and_verifies(registered: dict[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    v = registered["version"]
    capsys.readouterr()
    # cwd is tmp_path, where reports/medical/registry does not exist: the report is downloaded and checked
    assert main(["review", "show", "--domain", "medical"]) == 0  # no --version: the candidate
    out = capsys.readouterr().out
    downloaded = tmp_path / "xdg" / "medvit" / "review" / f"{NAME}-v1" / "review_report.html"
    assert f"review report: {downloaded}" in out and f"{NAME} version 1" in out
    assert sha256_file(downloaded) == report_sha256(v)

    # the repository's own copy is used when it matches the tag
    local = tmp_path / "reports" / "medical" / "registry" / "review_report.html"
    local.parent.mkdir(parents=True)
    local.write_bytes(registered["logged"].read_bytes())
    assert main(["review", "show", "--domain", "medical", "--version", "1"]) == 0
    assert f"review report: {local}" in capsys.readouterr().out

    # a report changed after registration is refused, naming both digests
    local.write_text("<html>edited</html>")
    downloaded.unlink()
    artifact = Path(mlflow.get_run(v.run_id).info.artifact_uri.removeprefix("file://")) / "review"
    (artifact / "review_report.html").write_text("<html>tampered</html>")
    assert main(["review", "show", "--domain", "medical", "--version", "1"]) == 2
    err = capsys.readouterr().err
    assert report_sha256(v) in err and "changed after registration" in err and not downloaded.exists()


def test_review_show_without_a_report(tracking: str, make_model: Callable[..., dict[str, Any]],
                                      make_report: Callable[..., Path], register: Callable[..., int],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    make_model()
    make_report()
    assert register() == 0
    client = registry.client()
    client.delete_model_version_tag(NAME, "1", REPORT_SHA_TAG)  # as for a version registered before #14
    capsys.readouterr()
    assert main(["review", "show", "--domain", "medical", "--version", "1"]) == 0
    assert "review report: not available" in capsys.readouterr().out


def test_refused_gate_writes_only_the_local_report(tracking: str, make_model: Callable[..., dict[str, Any]],
                                                   make_report: Callable[..., Path], register: Callable[..., int],
                                                   tmp_path: Path) -> None:
    make_model()
    report_dir = make_report(auroc=0.7)
    assert register(min_auroc=0.8) == 0
    page = (report_dir / "review" / "review_report.html").read_text()
    assert "version none (the quality gate refused registration)" in page and "refused" in page
    assert not (tmp_path / "registry" / "review_report.html").exists()
    assert registry.client().search_model_versions(f"name='{NAME}'") == []


def test_report_on_a_real_tracking_server(mlflow_server: str, make_model: Callable[..., dict[str, Any]],
                                          make_report: Callable[..., Path], register: Callable[..., int],
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Served artifacts over HTTP: the report is uploaded, its run links point at the UI, show downloads it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    make_model()
    make_report()
    assert register() == 0
    v = registry.client().get_model_version(NAME, "1")
    page = (tmp_path / "registry" / "review_report.html").read_text()
    assert f'<a href="{mlflow_server.rstrip("/")}/#/experiments/' in page and f"/runs/{v.run_id}" in page
    capsys.readouterr()
    assert main(["review", "show", "--domain", "medical", "--version", "1"]) == 0
    downloaded = tmp_path / "xdg" / "medvit" / "review" / f"{NAME}-v1" / "review_report.html"
    assert f"review report: {downloaded}" in capsys.readouterr().out
    assert sha256_file(downloaded) == report_sha256(v) == sha256_file(tmp_path / "registry" / "review_report.html")
