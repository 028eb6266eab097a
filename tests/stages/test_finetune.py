"""The finetune stage end to end through the CLI, on a real tiny cache, with a real SQLite MLflow store."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medvit.cli import main
from medvit.data.dataset import CacheDataset
from medvit.data.manifest import read_manifest
from medvit.data.scores import read_scores
from medvit.data.transforms import eval_transform
from medvit.models.classifier import load_classifier

TINY = {
    "model": "deit3_small_patch16_384", "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2},
    "weights": "none", "allow_random_init": True, "img_size": 32, "freeze_blocks": 1,
    "head": {"hidden_dim": 32, "dropout": 0.1}, "epochs": 2, "batch_size": 8, "lr": 0.003, "warmup_epochs": 0.5,
    # dvc.yaml declares finetune.domains.<domain>, so (as for `dvc repro`) params.yaml must hold the key.
    "domains": {"medical": {}, "satellite": {}},
}
META_KEYS = {"model", "img_size", "in_chans", "label_names", "head", "mean", "std", "weights", "pipeline_id",
             "run_id", "data_hash", "params_hash", "freeze_blocks"}


def _params(tmp_path: Path, **overrides: object) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"finetune": {**TINY, **overrides}}))
    return path


def _run(domain: str, cache: Path, out: Path, params: Path) -> int:
    return main(["finetune", "--domain", domain, "--cache", str(cache), "--out", str(out), "--params", str(params)])


def test_stage_writes_outputs_and_one_mlflow_run(tiny_cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cache, out = tiny_cache(), tmp_path / "models" / "medical"
    assert _run("medical", cache, out, _params(tmp_path)) == 0

    meta = json.loads((out / "meta.json").read_text())
    assert META_KEYS <= set(meta)
    assert meta["weights"] == "random-init" and meta["in_chans"] == 1 and meta["img_size"] == 32
    assert meta["label_names"] == ["a", "b", "c"] and meta["mean"] == [0.45] and meta["std"] == [0.25]
    assert (out / "checkpoint" / "last.pt").is_file()

    # Scores are the sigmoid of the saved model on the evaluation preprocessing.
    manifest = read_manifest(cache)
    model, meta = load_classifier(out)
    ds = CacheDataset(cache, "val", transform=eval_transform(meta["img_size"], meta["mean"], meta["std"]))
    with torch.no_grad():
        logits = model(torch.stack([ds[i]["image"] for i in range(len(ds))]))
    val = read_scores(out / "scores" / "val.csv")
    assert list(val.ids) == manifest.split("val")["id"].tolist() and val.label_names == ("a", "b", "c")
    assert np.allclose(val.scores, torch.sigmoid(logits).numpy(), atol=1e-5)
    test = read_scores(out / "scores" / "test.csv")
    assert list(test.ids) == manifest.split("test")["id"].tolist()

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("train/loss", "val/loss", "val/auroc_macro", "val/ap_macro", "test/auroc_macro", "test/ap_macro"):
        assert np.isfinite(metrics[key]), key
    assert metrics["weights"] == "random-init" and metrics["epochs_run"] == 2 and metrics["tracking_error"] is None
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train/loss", "val/loss", "val/auroc_macro", "val/ap_macro", "lr"]
    assert [r["epoch"] for r in rows] == ["1", "2"]

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("medvit-medical").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id == meta["run_id"] == metrics["run_id"]
    assert run.info.run_name == f"finetune-medical-{run.data.tags['git_commit'][:7]}"
    assert {k: run.data.tags[k] for k in ("stage", "domain", "weights", "data_hash", "params_hash", "pipeline_id")} \
        == {"stage": "finetune", "domain": "medical", "weights": "random-init", "data_hash": meta["data_hash"],
            "params_hash": meta["params_hash"], "pipeline_id": meta["pipeline_id"]}
    assert run.data.params["head.hidden_dim"] == "32" and run.data.params["model_kwargs.depth"] == "2"
    hist = client.get_metric_history(run.info.run_id, "val/auroc_macro")
    assert [m.step for m in hist] == [1, 2]
    assert len(client.get_metric_history(run.info.run_id, "lr")) == 2
    assert "test/auroc_macro" in run.data.metrics
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"learning_curves.png", "label_names.json", "finetune_params.json", "history.csv", "metrics.json",
            "meta.json"} <= artifacts

    # A re-run with the same params and data resumes the finished checkpoint instead of training again,
    # and its new MLflow run still carries the whole learning curve.
    weights = (out / "model.safetensors").read_bytes()
    assert _run("medical", cache, out, _params(tmp_path)) == 0
    assert (out / "model.safetensors").read_bytes() == weights
    assert json.loads((out / "metrics.json").read_text())["resumed_from_epoch"] == 2
    rerun = client.get_run(json.loads((out / "meta.json").read_text())["run_id"])
    assert rerun.info.run_id != run.info.run_id and rerun.data.tags["resumed_from_epoch"] == "2"
    assert [m.step for m in client.get_metric_history(rerun.info.run_id, "val/auroc_macro")] == [1, 2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_stage_finishes_when_mlflow_is_unreachable(tiny_cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    # Satellite: 4 bands -> in_chans 4; frozen-feature caching on.
    cache, out = tiny_cache(channels=4), tmp_path / "out"
    assert _run("satellite", cache, out, _params(tmp_path, epochs=1, cache_frozen_features=True)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "unreachable" in metrics["tracking_error"] and metrics["run_id"] is None
    assert metrics["frozen_feature_cache"] is True
    assert json.loads((out / "meta.json").read_text())["in_chans"] == 4
    assert (out / "model.safetensors").is_file() and (out / "scores" / "test.csv").is_file()
    assert "MLflow tracking failed" in capsys.readouterr().out


def test_missing_weights_is_a_clear_error(tiny_cache, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    params = _params(tmp_path, weights=str(tmp_path / "absent.safetensors"), allow_random_init=False)
    assert _run("medical", tiny_cache(), tmp_path / "out", params) == 2
    err = capsys.readouterr().err
    assert "absent.safetensors" in err and "allow_random_init" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_domain_override_changes_only_that_domains_schedule(tiny_cache, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDVIT_TRACKING", "off")
    params = _params(tmp_path, epochs=1, domains={"medical": {"epochs": 2}, "satellite": {"epochs": 3}})
    out = tmp_path / "models" / "medical"
    assert _run("medical", tiny_cache(), out, params) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2  # the medical override, not the top-level 1 or satellite's 3
