"""Registration on a real SQLite MLflow store: versions, tags, the servable model and the card."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import mlflow
import pytest
from mlflow import MlflowClient

NAME = "medvit-medical"


def _record(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "registry" / "registration.json").read_text())


def test_register_creates_candidate_with_tags_and_model_card(
    tmp_path: Path, tracking: str, make_model: Callable[..., dict], make_report: Callable[..., Path],
    register: Callable[..., int],
) -> None:
    meta = make_model()
    make_report(auroc=0.91)
    assert register(min_auroc=0.8, min_margin=0.05) == 0
    client = MlflowClient()
    v = client.get_model_version_by_alias(NAME, "candidate")
    assert str(v.version) == "1" and v.aliases == ["candidate"]
    tags = v.tags
    assert tags["review_status"] == "pending" and tags["gate"] == "passed"
    assert tags["weights"] == meta["weights"] and tags["weights_random_init"] == "false"
    assert tags["data_hash"] == "data123" and tags["pipeline_id"] == "pipe123" and tags["git_commit"]
    assert float(tags["test/auroc_macro"]) == pytest.approx(0.91)
    assert float(tags["test/auroc_macro_ci_low"]) == pytest.approx(0.85)
    assert float(tags["baseline/linear_probe/test/auroc_macro"]) == pytest.approx(0.7)
    assert len(tags["weights_sha256"]) == 64
    card = v.description
    assert "NOT FOR CLINICAL USE UNTIL APPROVED" in card and "## Intended use" in card and "## Limitations" in card
    assert "0.910 [0.850, 0.950]" in card and "linear_probe" in card and "RANDOM-INIT" not in card
    # The MLflow run of the stage carries the lineage and the gate outcome.
    run = client.get_run(v.run_id)
    assert run.data.tags["stage"] == "register" and run.data.tags["gate"] == "passed"
    assert run.data.tags["pipeline_id"] == "pipe123"
    record = _record(tmp_path)
    assert record["status"] == "registered" and record["version"] == "1" and record["aliases"] == ["candidate"]
    assert record["run_id"] == v.run_id and record["gate"]["passed"] is True


def test_servable_model_is_logged_from_code_without_pickle(
    tmp_path: Path, tracking: str, make_model: Callable[..., dict], make_report: Callable[..., Path],
    register: Callable[..., int],
) -> None:
    make_model()
    make_report()
    assert register() == 0
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@candidate", dst_path=str(tmp_path / "dl")))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert not any(f.endswith((".pkl", ".pickle", ".cloudpickle")) for f in files), files
    assert {"artifacts/classifier/model.safetensors", "artifacts/classifier/meta.json",
            "artifacts/thresholds.json"} <= files
    mlmodel = (local / "MLmodel").read_text()
    assert "model_code_path" in mlmodel and "python_model.pkl" not in mlmodel
    info = mlflow.models.get_model_info(f"models:/{NAME}@candidate")
    # Two input kinds (tensor, raw files) are declared in the metadata; the signature declares the outputs.
    assert info.signature.inputs is None and set(info.metadata["medvit_inputs"]) == {"tensor", "file"}
    outputs = info.signature.outputs.input_names()
    assert outputs[:3] == ["input", "id", "bounds"] and outputs[-3:] == ["model", "version", "error"]
    assert "score:effusion" in outputs and "label:effusion" in outputs
    assert info.metadata["registered_model"] == NAME
    thresholds = json.loads((local / "artifacts" / "thresholds.json").read_text())
    assert thresholds["thresholds"] == [0.4, 0.5, 0.6]


def test_rerun_with_unchanged_model_creates_no_new_version(
    tmp_path: Path, tracking: str, make_model: Callable[..., dict], make_report: Callable[..., Path],
    register: Callable[..., int],
) -> None:
    make_model(seed=0)
    make_report()
    assert register() == 0
    assert register() == 0
    client = MlflowClient()
    assert [str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")] == ["1"]
    assert _record(tmp_path)["status"] == "unchanged" and _record(tmp_path)["version"] == "1"
    # New thresholds (same weights) are a different servable model: a new version, which takes the candidate alias.
    make_report(thresholds=[0.3, 0.5, 0.6])
    assert register() == 0
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == "2"
    # New weights: another version.
    make_model(seed=1)
    assert register() == 0
    assert sorted(int(v.version) for v in client.search_model_versions(f"name = '{NAME}'")) == [1, 2, 3]


def test_refused_gate_registers_nothing_and_records_why(
    tmp_path: Path, tracking: str, make_model: Callable[..., dict], make_report: Callable[..., Path],
    register: Callable[..., int], capsys: pytest.CaptureFixture[str],
) -> None:
    make_model()
    make_report(auroc=0.72)
    assert register(min_auroc=0.8) == 0  # demo default: the stage passes and records the refusal
    assert "quality gate REFUSED" in capsys.readouterr().err
    client = MlflowClient()
    assert client.search_registered_models() == []
    record = _record(tmp_path)
    assert record["status"] == "refused" and record["version"] is None
    assert any("below min_auroc" in r for r in record["gate"]["reasons"])
    run = client.get_run(record["run_id"])
    assert run.data.tags["gate"] == "refused" and "below min_auroc" in run.data.tags["gate_reason"]
    assert "REFUSED" in (tmp_path / "registry" / "model_card.md").read_text()
    assert register(min_auroc=0.8, fail_on_gate=True) == 1


def test_random_init_weights_are_loud_in_the_card(
    tracking: str, make_model: Callable[..., dict], make_report: Callable[..., Path], register: Callable[..., int],
) -> None:
    make_model(weights="random-init")
    make_report()
    assert register() == 0
    v = MlflowClient().get_model_version(NAME, "1")
    assert v.tags["weights_random_init"] == "true"
    assert "WARNING: RANDOM-INIT WEIGHTS" in v.description and "cannot be approved" in v.description
    assert not math.isnan(float(v.tags["test/auroc_macro"]))
