"""The team server: a real PostgreSQL behind ``mlflow server --app-name basic-auth`` with real users.

admin creates the users, the experiment and the registered model and grants: engineer EDIT on both
(registers), reviewer and reviewer2 MANAGE on the registered model (approve/reject), reader nothing
beyond the default READ. Every test goes through the real server and checks what the registry holds,
including two reviewers deciding at once and both domains' register stages running at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from mlflow import MlflowClient

from medvit.cli import main
from medvit.errors import UserError
from medvit.tracking.identity import registry_errors
from medvit.tracking.review import audit_trail
from servers import free_port, start_mlflow_auth_server, start_postgres, stop_postgres, stop_server
from tracking.conftest import write_model, write_report

pytestmark = pytest.mark.slow  # PostgreSQL + MLflow server start and three registrations: minutes on 2 CPUs
NAME = "medvit-medical"
ADMIN_PASSWORD = "admin-pw-for-tests-only"
USERS = ("engineer", "reviewer", "reviewer2", "reader")


def password(user: str) -> str:
    return ADMIN_PASSWORD if user == "admin" else f"{user}-pw-123"


def credentials(user: str, uri: str, pw: str | None = None) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": pw if pw is not None else password(user)}


def client_as(monkeypatch: pytest.MonkeyPatch, uri: str, user: str, pw: str | None = None) -> MlflowClient:
    """Act as ``user`` (the CLI and MlflowClient read the MLFLOW_TRACKING_* variables)."""
    for key, value in credentials(user, uri, pw).items():
        monkeypatch.setenv(key, value)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def register_as(user: str, uri: str, work: Path, seed: int) -> str:
    """``medvit register`` as ``user`` on a new tiny model; returns the new version."""
    write_model(work / "models", seed)
    write_report(work / "reports")
    (work / "params.yaml").write_text("register:\n  onnx: false\n")
    with pytest.MonkeyPatch.context() as mp:
        client = client_as(mp, uri, user)
        mp.chdir(work)
        assert main(["register", "--domain", "medical", "--params", str(work / "params.yaml"), "--finetune",
                     str(work / "models"), "--report", str(work / "reports"), "--out", str(work / "registry")]) == 0
        return str(client.get_model_version_by_alias(NAME, "candidate").version)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """PostgreSQL + the basic-auth MLflow server, users and grants; versions 1 and 2 by engineer, 3 by reviewer."""
    from mlflow.server import get_app_client

    work = tmp_path_factory.mktemp("team")
    pg_uri, pg, pg_data = start_postgres("pg-pw-for-tests", ("mlflow",))
    server = None
    try:
        uri, server = start_mlflow_auth_server(f"{pg_uri}/mlflow", work, ADMIN_PASSWORD)
        with pytest.MonkeyPatch.context() as mp:
            admin = client_as(mp, uri, "admin")
            auth = get_app_client("basic-auth", tracking_uri=uri)
            for user in USERS:
                auth.create_user(user, password(user))
            experiment = admin.create_experiment(NAME)
            admin.create_registered_model(NAME)
            for user, resource, rid, permission in (
                    ("engineer", "experiment", experiment, "EDIT"), ("engineer", "registered_model", NAME, "EDIT"),
                    ("reviewer", "registered_model", NAME, "MANAGE"), ("reviewer2", "registered_model", NAME, "MANAGE"),
                    ("reviewer", "experiment", experiment, "EDIT")):  # reviewer also registers, for self-approval
                auth.grant_user_permission(user, resource, rid, permission)
        versions = [register_as("engineer", uri, work / "e", 0), register_as("engineer", uri, work / "e", 1),
                    register_as("reviewer", uri, work / "r", 2)]
        assert versions == ["1", "2", "3"]
        yield {"uri": uri, "work": work, "pg_uri": pg_uri}
    finally:
        if server is not None:
            stop_server(server)
        stop_postgres(pg, pg_data)


def _review(*args: str) -> int:
    return main(["review", *args, "--domain", "medical"])


def _aliases(uri: str) -> dict[str, str]:
    with pytest.MonkeyPatch.context() as mp:
        return dict(client_as(mp, uri, "admin").get_registered_model(NAME).aliases)


def test_engineer_registers_and_reviewer_approves_with_report_sha(
    team: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = team["uri"]
    engineer = client_as(monkeypatch, uri, "engineer")
    v1 = engineer.get_model_version(NAME, "1")
    assert v1.tags["registered_by"] == "engineer" and v1.tags["review_status"] == "pending"
    assert v1.run_id and engineer.get_run(v1.run_id).data.tags["stage"] == "register"
    report_sha = v1.tags["review_report_sha256"]  # register logged the review report with the version
    assert len(report_sha) == 64
    # The engineer (EDIT) is refused before anything is written, and told which permission is missing.
    assert _review("approve", "--version", "1", "--note", "looks good to me") == 2
    err = capsys.readouterr().err
    assert "needs MANAGE on registered model 'medvit-medical'" in err and "'engineer' has EDIT" in err
    assert "champion" not in _aliases(uri)
    # A typed name is not accepted where the server authenticates.
    client_as(monkeypatch, uri, "reviewer")
    assert _review("approve", "--version", "1", "--reviewer", "Dr Lee", "--note", "x") == 2
    assert "--reviewer is not accepted" in capsys.readouterr().err
    assert _review("approve", "--version", "1", "--note", "site read-out matches") == 0
    assert _aliases(uri)["champion"] == "1"
    v1 = engineer.get_model_version(NAME, "1")
    assert v1.tags["review_status"] == "approved" and v1.tags["reviewer"] == "reviewer"
    [entry] = audit_trail(v1)
    assert entry["user"] == "reviewer" and entry["decision"] == "approve" and entry["report_sha256"] == report_sha
    assert entry["note"] == "site read-out matches"
    assert not [e for e in audit_trail(engineer.get_model_version(NAME, "2")) if e["user"] == "engineer"]


def test_self_approval_is_refused_on_the_server(
    team: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = team["uri"]
    reviewer = client_as(monkeypatch, uri, "reviewer")
    before = _aliases(uri)
    assert reviewer.get_model_version(NAME, "3").tags["registered_by"] == "reviewer"
    assert _review("approve", "--version", "3", "--note", "my own model") == 2
    assert "registered by reviewer, who cannot also approve it" in capsys.readouterr().err
    assert _review("approve", "--version", "3", "--note", "x", "--allow-self-approval") == 2
    assert "--allow-self-approval exists only for the embedded store" in capsys.readouterr().err
    assert _aliases(uri) == before and audit_trail(reviewer.get_model_version(NAME, "3")) == []
    client_as(monkeypatch, uri, "reviewer2")  # another reviewer may
    assert _review("approve", "--version", "3", "--note", "second pair of eyes") == 0
    assert _aliases(uri)["champion"] == "3"


def test_read_only_user_is_refused_by_the_server_with_the_missing_permission(
    team: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = team["uri"]
    reader = client_as(monkeypatch, uri, "reader")
    before = _aliases(uri)
    assert _review("list") == 0  # READ is enough to look
    assert _review("reject", "--version", "1", "--note", "no") == 2
    assert "needs MANAGE on registered model 'medvit-medical'; MLflow user 'reader' has READ" in capsys.readouterr().err
    # The server itself refuses the write (403), and the message names the permission.
    with pytest.raises(UserError, match=r"refused MLflow user 'reader': medvit review approve needs MANAGE"):
        with registry_errors("MANAGE on registered model 'medvit-medical'", "medvit review approve"):
            reader.set_registered_model_alias(NAME, "champion", "2")
    with pytest.raises(UserError, match="refused MLflow user 'reader'"):
        with registry_errors("MANAGE on registered model 'medvit-medical'", "medvit review reject"):
            reader.set_model_version_tag(NAME, "1", "review_status", "rejected")
    assert _aliases(uri) == before


def test_wrong_password_and_server_down_are_clear_and_move_nothing(
    team: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = team["uri"]
    before = _aliases(uri)
    client_as(monkeypatch, uri, "reviewer", pw="not-the-password")
    assert _review("reject", "--version", "2", "--note", "x") == 2
    err = capsys.readouterr().err
    assert "did not accept the credentials of MLFLOW_TRACKING_USERNAME=reviewer" in err
    assert "not-the-password" not in err
    down = f"http://127.0.0.1:{free_port()}"
    client_as(monkeypatch, down, "reviewer")
    start = time.monotonic()
    assert _review("approve", "--version", "2", "--note", "x") == 2
    assert f"cannot reach the MLflow server at {down}" in capsys.readouterr().err
    assert time.monotonic() - start < 60  # bounded time-outs, no minutes of retries
    assert _aliases(uri) == before
    with pytest.MonkeyPatch.context() as mp:
        assert audit_trail(client_as(mp, uri, "admin").get_model_version(NAME, "2")) == []


CONCURRENT = """
import sys, time
from pathlib import Path
import medvit.tracking.review, medvit.tracking.identity  # import before the start line
from medvit.cli import main
Path(sys.argv[1] + ".ready").touch()
while not Path(sys.argv[1]).exists():
    time.sleep(0.005)
sys.exit(main(sys.argv[2:]))
"""


def test_two_reviewers_at_once_lose_nothing(team: dict[str, Any], tmp_path: Path) -> None:
    uri = team["uri"]
    go = tmp_path / "go"
    procs = []
    for i, (user, action) in enumerate((("reviewer", "approve"), ("reviewer2", "reject"))):
        procs.append(subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(go) + str(i), "review", action, "--domain", "medical",
             "--version", "2", "--note", f"{action} by {user}"],
            env={**os.environ, **credentials(user, uri)}, cwd=tmp_path, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}{i}.ready").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    for i in range(2):
        Path(f"{go}{i}").touch()
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    with pytest.MonkeyPatch.context() as mp:
        v2 = client_as(mp, uri, "admin").get_model_version(NAME, "2")
    trail = audit_trail(v2)
    assert sorted((e["user"], e["decision"], e["note"]) for e in trail) == [
        ("reviewer", "approve", "approve by reviewer"), ("reviewer2", "reject", "reject by reviewer2")]
    assert all(set(e) >= {"id", "user", "decision", "at", "note", "report_sha256"} for e in trail)


def test_two_domains_register_at_once_and_nothing_is_lost(team: dict[str, Any], tmp_path: Path) -> None:
    """The register stages of both domains run at the same time against the server, as two `dvc repro` would."""
    from mlflow.server import get_app_client

    uri, sat = team["uri"], "medvit-satellite"
    with pytest.MonkeyPatch.context() as mp:
        admin = client_as(mp, uri, "admin")
        experiment = admin.create_experiment(sat)
        admin.create_registered_model(sat)
        auth = get_app_client("basic-auth", tracking_uri=uri)
        auth.grant_user_permission("engineer", "experiment", experiment, "EDIT")
        auth.grant_user_permission("engineer", "registered_model", sat, "EDIT")
        medical_before = {v.version for v in admin.search_model_versions(f"name = '{NAME}'")}
    go, procs = tmp_path / "go", []
    for i, domain in enumerate(("medical", "satellite")):
        work = tmp_path / domain
        write_model(work / "models", 10 + i)
        write_report(work / "reports", auroc=0.9 + i / 100)
        (work / "params.yaml").write_text("register:\n  onnx: false\n")
        procs.append(subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(go) + str(i), "register", "--domain", domain, "--params",
             str(work / "params.yaml"), "--finetune", str(work / "models"), "--report", str(work / "reports"),
             "--out", str(work / "registry")],
            env={**os.environ, **credentials("engineer", uri)}, cwd=work, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}{i}.ready").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    for i in range(2):
        Path(f"{go}{i}").touch()
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    with pytest.MonkeyPatch.context() as mp:
        admin = client_as(mp, uri, "admin")
        for name, auroc, before in ((NAME, 0.9, medical_before), (sat, 0.91, set())):
            new = [v for v in admin.search_model_versions(f"name = '{name}'") if v.version not in before]
            assert len(new) == 1 and new[0].tags["registered_by"] == "engineer"
            run = admin.get_run(new[0].run_id)
            assert run.data.tags["stage"] == "register" and run.data.tags["registered_model"] == name
            assert run.data.metrics["test/auroc_macro"] == pytest.approx(auroc)
            assert admin.get_experiment(run.info.experiment_id).name == name
