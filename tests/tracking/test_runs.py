"""StageRun against a real SQLite store, an unreachable server and a server that never answers."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import pytest

from medvit.tracking.runs import flatten, stage_run


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real SQLite store for the module (creating its schema takes seconds)."""
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.fixture
def sqlite_uri(sqlite_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{sqlite_db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_logs_to_real_sqlite_store(sqlite_uri: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    art = tmp_path / "curve.txt"
    art.write_text("x")
    tags = {"data_hash": "d", "params_hash": "p", "pipeline_id": "pid", "weights": "random-init"}
    with stage_run("finetune", "medical", tags, system_metrics=False) as run:
        run.log_params({"lr": 0.1, "head": {"hidden_dim": 8}, "aug": [1, 2]})
        for step in (1, 2):
            run.log_metrics({"val/auroc_macro": 0.5 + step / 10, "lr": 0.01}, step=step)
        run.log_artifact(art)
    assert run.error is None and run.run_id
    client = MlflowClient(tracking_uri=sqlite_uri)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.tags["stage"] == "finetune" and got.data.tags["domain"] == "medical"
    assert got.data.tags["weights"] == "random-init" and got.data.tags["pipeline_id"] == "pid"
    assert "git_commit" in got.data.tags
    assert got.info.run_name.startswith("finetune-medical-")
    assert got.data.params == {"lr": "0.1", "head.hidden_dim": "8", "aug": "[1, 2]"}
    hist = client.get_metric_history(run.run_id, "val/auroc_macro")
    assert [(m.step, round(m.value, 6)) for m in hist] == [(1, 0.6), (2, 0.7)]
    assert [f.path for f in client.list_artifacts(run.run_id)] == ["curve.txt"]
    # Artifacts sit beside the SQLite file, not in ./mlruns of the working directory.
    exp = client.get_experiment(got.info.experiment_id)
    assert exp.artifact_location == (Path(sqlite_uri[len("sqlite:///"):]).parent / "artifacts").as_uri()


def test_failure_mid_run_disables_logging_and_is_reported(sqlite_uri: str) -> None:
    with stage_run("finetune", "satellite", {}) as run:
        run.log_params({"lr": 0.1})
        with pytest.warns(UserWarning, match="MLflow logging disabled"):
            run.log_params({"lr": 0.2})  # the store refuses to change a logged param
        assert run.error and "log_params failed" in run.error
        run.log_metrics({"a": 1.0}, step=0)  # a no-op now, no second warning
    from mlflow.tracking import MlflowClient

    assert MlflowClient(tracking_uri=sqlite_uri).get_run(run.run_id).data.metrics == {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(60)
def test_unreachable_server_yields_inactive_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with stage_run("finetune", "medical", {"weights": "x"}) as run:
            run.log_params({"a": 1})
            run.log_metrics({"m": 1.0}, step=1)
    assert not run.active and run.run_id is None
    assert "unreachable" in (run.error or "")
    assert any("continuing without tracking" in str(w.message) for w in caught)


@pytest.mark.timeout(60)
def test_silent_server_is_bounded_by_http_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts connections but never answers: MLflow's own HTTP time-out ends the wait."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)  # the kernel completes handshakes; nobody ever reads or replies
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{srv.getsockname()[1]}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        with pytest.warns(UserWarning, match="could not start an MLflow run"):
            with stage_run("finetune", "medical", {}) as run:
                run.log_metrics({"m": 1.0}, step=1)
    assert not run.active and "could not start" in (run.error or "")


def test_tracking_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDVIT_TRACKING", "off")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    with stage_run("finetune", "medical", {}) as run:
        run.log_metrics({"m": 1.0})
    assert run.error is None and run.run_id is None and not run.active


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": [1]}, "d": None}) == {"a.b": 1, "a.c": "[1]", "d": None}
