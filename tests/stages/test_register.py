"""The register stage through `medvit register` on fixture outputs of finetune and evaluate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from mlflow import MlflowClient

from medvit.cli import main
from medvit.models.classifier import build_classifier, load_classifier, save_classifier


BANDS = 4
LABELS = ["water", "forest", "cropland"]
META = {
    "model": "deit3_small_patch16_384", "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2},
    "img_size": 32, "in_chans": BANDS, "label_names": LABELS, "head": {"hidden_dim": 16, "dropout": 0.1},
    "mean": [0.1] * BANDS, "std": [0.05] * BANDS, "weights": "hub:timm/deit3_small_patch16_384.fb_in22k_ft_in1k",
    "freeze_blocks": 1, "pipeline_id": "p-sat", "run_id": "r-sat", "data_hash": "d-sat", "params_hash": "h-sat",
}


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its schema migrated once (migrations take seconds)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_db: Path) -> Path:
    """finetune + evaluate outputs for the satellite domain and an empty SQLite store under tmp_path."""
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    save_classifier(build_classifier(META), META, tmp_path / "models" / "satellite")
    report = tmp_path / "reports" / "satellite"
    report.mkdir(parents=True)
    (report / "metrics.json").write_text(json.dumps({
        "test/auroc_macro": 0.88, "test/auroc_macro_ci_low": 0.8, "test/auroc_macro_ci_high": 0.93,
        "clip_zeroshot": {"test/auroc_macro": 0.7, "test/auroc_macro_diff": 0.18,
                          "test/auroc_macro_diff_ci_low": 0.1, "test/auroc_macro_diff_ci_high": 0.25},
    }))
    (report / "thresholds.json").write_text(json.dumps(
        {"method": "f1", "label_names": LABELS, "thresholds": {"water": 0.5, "forest": 0.4, "cropland": 0.3}}))
    return tmp_path


def _register(root: Path, **register_params: object) -> int:
    (root / "params.yaml").write_text(yaml.safe_dump({"register": register_params}))
    return main(["register", "--domain", "satellite", "--params", str(root / "params.yaml"),
                 "--finetune", str(root / "models" / "satellite"), "--report", str(root / "reports" / "satellite"),
                 "--out", str(root / "reports" / "satellite" / "registry")])


def test_register_stage_logs_pyfunc_and_onnx_with_the_version(stage: Path) -> None:
    assert _register(stage, min_auroc=0.8, min_margin=0.1, onnx=True, onnx_opset=17) == 0
    out = stage / "reports" / "satellite" / "registry"
    record = json.loads((out / "registration.json").read_text())
    assert record["registered_model"] == "medvit-satellite" and record["status"] == "registered"
    assert record["model_uri"] == "models:/medvit-satellite/1" and record["aliases"] == ["candidate"]
    card = (out / "model_card.md").read_text()
    assert "land-cover" in card and "opset 17" in card and "+0.180 [+0.100, +0.250]" in card

    v = MlflowClient().get_model_version("medvit-satellite", "1")
    assert v.tags["onnx_opset"] == "17" and float(v.tags["onnx_max_abs_diff"]) <= 1e-4
    assert v.tags["weights"].startswith("hub:timm/") and v.tags["threshold_method"] == "f1"
    assert v.description == card
    run = MlflowClient().get_run(record["run_id"])
    assert run.data.tags["registered_version"] == "1" and run.data.params["register.min_margin"] == "0.1"

    # The ONNX file travels with the version and reproduces the PyTorch logits.
    local = Path(mlflow.artifacts.download_artifacts("models:/medvit-satellite@candidate", dst_path=str(stage / "dl")))
    sess = ort.InferenceSession(str(local / "artifacts" / "model.onnx"), providers=["CPUExecutionProvider"])
    model, _ = load_classifier(stage / "models" / "satellite")
    x = torch.randn(4, BANDS, 32, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(sess.run(None, {"image": x.numpy()})[0] - ref).max() <= 1e-4


def test_refused_gate_fails_the_stage_when_asked(stage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _register(stage, min_auroc=0.9, fail_on_gate=True, onnx=False) == 1
    err = capsys.readouterr().err
    assert "quality gate REFUSED medvit-satellite" in err and "0.880 (95% CI 0.800-0.930) is below min_auroc 0.900" in err
    record = json.loads((stage / "reports" / "satellite" / "registry" / "registration.json").read_text())
    assert record["status"] == "refused" and record["version"] is None and record["gate"]["passed"] is False
    assert MlflowClient().search_registered_models() == []


def test_missing_inputs_are_clear_errors(stage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = stage / "reports" / "satellite"
    thresholds = json.loads((report / "thresholds.json").read_text())
    del thresholds["thresholds"]["forest"]
    (report / "thresholds.json").write_text(json.dumps(thresholds))
    assert _register(stage, onnx=False) == 2
    err = capsys.readouterr().err
    assert "thresholds.json: missing key thresholds.'forest'" in err and "Traceback" not in err

    (report / "metrics.json").write_text(json.dumps({"val/auroc_macro": 0.9}))
    assert _register(stage, onnx=False) == 2
    assert "metrics.json: missing key 'test/auroc_macro'" in capsys.readouterr().err

    shutil.rmtree(stage / "models" / "satellite")
    assert _register(stage, onnx=False) == 2
    assert "model.safetensors: missing; run the finetune stage" in capsys.readouterr().err
    assert not (report / "registry" / "registration.json").exists()
