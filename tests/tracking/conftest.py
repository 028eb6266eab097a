"""Register/review/serve fixtures: tiny classifier outputs, evaluate reports and a real SQLite MLflow store."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
import yaml

from medvit.cli import main
from servers import free_port, start_mlflow_server, start_server, stop_server, wait_http
from medvit.models.classifier import build_classifier, save_classifier

LABELS = ["effusion", "nodule", "pneumothorax"]
TINY_META: dict[str, Any] = {
    "model": "deit3_small_patch16_384", "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2},
    "img_size": 32, "in_chans": 1, "label_names": LABELS, "head": {"hidden_dim": 16, "dropout": 0.1},
    "mean": [0.45], "std": [0.25], "weights": "local:/models/tiny-pretrained.safetensors", "freeze_blocks": 1,
    "pipeline_id": "pipe123", "run_id": "finetune-run", "data_hash": "data123", "params_hash": "params123",
}


def write_model(model_dir: Path, seed: int = 0, **meta_overrides: Any) -> dict[str, Any]:
    """A tiny classifier saved through the finetune contract (model.safetensors + meta.json)."""
    meta = {**TINY_META, **meta_overrides}
    torch.manual_seed(seed)
    save_classifier(build_classifier(meta), meta, model_dir)
    return meta


def write_report(
    report_dir: Path,
    auroc: float | None = 0.91,
    baselines: dict[str, float] | None = None,
    thresholds: list[float] | None = None,
) -> None:
    """metrics.json and thresholds.json in evaluate's layout (model at top level, baselines nested).

    ``auroc=None`` leaves test/auroc_macro out, as evaluate does for an undefined (NaN) value.
    """
    report_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {"test/ap_macro": 0.8, "test/ap_macro_ci_low": 0.7, "test/ap_macro_ci_high": 0.88,
                                "test/n_samples": 40, "val/auroc_macro": 0.9}
    if auroc is not None:
        metrics.update({"test/auroc_macro": auroc, "test/auroc_macro_ci_low": auroc - 0.06,
                         "test/auroc_macro_ci_high": min(1.0, auroc + 0.04)})
    for name, value in (baselines if baselines is not None else {"clip_zeroshot": 0.62, "linear_probe": 0.7}).items():
        metrics[name] = {"test/auroc_macro": value, "test/auroc_macro_ci_low": value - 0.1,
                          "test/auroc_macro_ci_high": value + 0.1, "test/auroc_macro_diff": (auroc or 0) - value,
                          "test/auroc_macro_diff_ci_low": (auroc or 0) - value - 0.05,
                          "test/auroc_macro_diff_ci_high": (auroc or 0) - value + 0.05}
    (report_dir / "metrics.json").write_text(json.dumps(metrics))
    ts = thresholds or [0.4, 0.5, 0.6]
    (report_dir / "thresholds.json").write_text(json.dumps({
        "method": "youden", "chosen_on": "val", "rule": "score >= threshold", "label_names": LABELS,
        "thresholds": dict(zip(LABELS, ts)), "baselines": {"clip_zeroshot": {"thresholds": dict(zip(LABELS, ts))}},
    }))


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Factory: ``make_model(seed=0, **meta_overrides)`` writes tmp_path/models and returns its meta."""
    return lambda seed=0, **overrides: write_model(tmp_path / "models", seed, **overrides)


@pytest.fixture
def make_report(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_report(auroc=..., baselines=..., thresholds=...)`` writes tmp_path/reports."""

    def _make(**kwargs: Any) -> Path:
        write_report(tmp_path / "reports", **kwargs)
        return tmp_path / "reports"

    return _make


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite database with the schema migrated (once per session: migrations take seconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> str:
    """A fresh SQLite MLflow store under tmp_path; cwd moves there too, so default artifacts stay in tmp."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture
def register(tmp_path: Path) -> Callable[..., int]:
    """Run ``medvit register`` on tmp_path/models and tmp_path/reports with a params file of ``register`` keys."""

    def _run(domain: str = "medical", **register_params: Any) -> int:
        params = tmp_path / "params.yaml"
        params.write_text(yaml.safe_dump({"register": {"onnx": False, **register_params}}))
        return main(["register", "--domain", domain, "--params", str(params), "--finetune", str(tmp_path / "models"),
                     "--report", str(tmp_path / "reports"), "--out", str(tmp_path / "registry")])

    return _run


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Factory: ``model_server(model_uri)`` runs ``mlflow models serve --env-manager local`` and returns its URL."""
    procs: list[subprocess.Popen] = []

    def _serve(model_uri: str) -> str:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        proc = start_server(["mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], log)
        procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/ping", proc, 180, log)
        return f"http://127.0.0.1:{port}"

    _serve.processes = procs  # type: ignore[attr-defined] - the started servers, for memory checks
    try:
        yield _serve
    finally:
        for proc in procs:
            stop_server(proc)


@pytest.fixture
def mlflow_server(tmp_path: Path, empty_store: Path) -> Iterator[str]:
    """A real ``mlflow server`` on a free localhost port (SQLite backend, local artifact root); yields its URI."""
    shutil.copy(empty_store, tmp_path / "server.db")
    uri, proc = start_mlflow_server(tmp_path / "server.db", tmp_path / "server-artifacts", tmp_path / "server.log", 120)
    try:
        yield uri
    finally:
        stop_server(proc)


@pytest.fixture
def dicom_model(tmp_path: Path, make_model: Callable[..., dict[str, Any]], make_report: Callable[..., Path],
                register: Callable[..., int], tracking: str) -> dict[str, Any]:
    """A registered tiny medical model (``medvit-medical`` version 1, thresholds 0.2/0.5/0.8) whose meta.json
    carries the preprocess params of a 48 px medical cache (medvit.data.preprocess)."""
    from medvit.data.preprocess import Preprocessor

    prep = Preprocessor("medical", 48, dicom={"voi": "header", "window": None, "percentiles": [0.5, 99.5],
                                              "multiframe": "first", "allow_burned_in": False})
    meta = make_model(preprocess=prep.with_model(32, [0.45], [0.25]).to_json())
    make_report(thresholds=[0.2, 0.5, 0.8])
    assert register() == 0
    return meta


@pytest.fixture
def dicom_scores(tmp_path: Path) -> Callable[[Path], Any]:
    """Factory: the tmp_path/models classifier's (L,) scores for one DICOM file, computed on ingest's decode
    (read_frames, 48 px letterbox) and the evaluation transform."""
    import numpy as np

    from medvit.data.preprocess import letterbox
    from medvit.data.transforms import eval_transform
    from medvit.io.dicom import DicomOptions, read_frames
    from medvit.models.classifier import load_classifier

    def _scores(path: Path) -> np.ndarray:
        model, meta = load_classifier(tmp_path / "models")
        _, frames = read_frames(path, DicomOptions())
        x = eval_transform(32, meta["mean"], meta["std"])(letterbox(next(frames)[1], 48))
        with torch.no_grad():
            return torch.sigmoid(model(torch.from_numpy(x[None]))).numpy()[0]

    return _scores
