"""Review CLI on the embedded store and a real server without authentication: approve/reject tags, the
append-only audit trail, the champion alias, unauthenticated reviewer names, self-approval and refusals.
The team server with authentication is tested in test_team_server.py."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Callable

import pytest
from mlflow import MlflowClient

from medvit.cli import main
from medvit.tracking.review import audit_trail


NAME = "medvit-medical"


def _review(*args: str) -> int:
    return main(["review", *args, "--domain", "medical"])


@pytest.fixture
def two_versions(
    tracking: str, make_model: Callable[..., dict], make_report: Callable[..., Path], register: Callable[..., int],
) -> MlflowClient:
    """Version 1 and 2 with pretrained provenance, both past the gate; 2 is the candidate."""
    make_report()
    for seed in (0, 1):
        make_model(seed=seed)
        assert register() == 0
    return MlflowClient()


def test_approve_sets_tags_audit_and_champion(two_versions: MlflowClient, capsys: pytest.CaptureFixture[str]) -> None:
    client = two_versions
    assert _review("approve", "--version", "1", "--reviewer", "Dr Lee", "--note", "matches site read-out") == 0
    v1 = client.get_model_version(NAME, "1")
    # A typed name on the embedded store is marked as such: nothing authenticated it.
    assert v1.tags["review_status"] == "approved" and v1.tags["reviewer"] == "unauthenticated:Dr Lee"
    assert v1.tags["review_note"] == "matches site read-out" and v1.tags["reviewed_at"].endswith("Z")
    assert client.get_model_version_by_alias(NAME, "champion").version in (1, "1")
    [entry] = audit_trail(v1)
    assert entry["decision"] == "approve" and entry["user"] == "unauthenticated:Dr Lee" and entry["at"].endswith("Z")
    # the review report register logged with the version (issue #14) is the one approved
    assert entry["report_sha256"] == v1.tags["review_report_sha256"] and len(entry["report_sha256"]) == 64
    assert entry["champion"] == "set"
    assert {k for k in v1.tags if k.startswith("review.")} == {f"review.{entry['id']}.{f}" for f in
                                                               ("user", "decision", "at", "note", "report_sha256",
                                                                "champion")}
    # Approving version 2 moves champion and leaves a trace on version 1; the trail only grows.
    assert _review("approve", "--version", "2", "--reviewer", "Dr Kim", "--note", "better on nodules") == 0
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    trail = audit_trail(client.get_model_version(NAME, "1"))
    assert [e["decision"] for e in trail] == ["approve", "champion_superseded"]
    assert trail[0] == entry and trail[1]["user"] == "unauthenticated:Dr Kim"
    assert audit_trail(client.get_model_version(NAME, "2"))[0]["champion"] == "moved from version 1"
    capsys.readouterr()
    assert _review("list") == 0
    out = capsys.readouterr().out
    assert "champion" in out and "approved" in out and "candidate" in out


def test_reject_records_decision_and_removes_champion(two_versions: MlflowClient) -> None:
    client = two_versions
    assert _review("approve", "--version", "2", "--reviewer", "Dr Lee", "--note", "ok") == 0
    assert _review("reject", "--version", "2", "--reviewer", "Dr Kim", "--note", "fails on portable films") == 0
    v2 = client.get_model_version(NAME, "2")
    assert v2.tags["review_status"] == "rejected" and v2.tags["reviewer"] == "unauthenticated:Dr Kim"
    assert "champion" not in v2.aliases
    trail = audit_trail(v2)
    assert [e["decision"] for e in trail] == ["approve", "reject"]
    assert trail[1]["note"] == "fails on portable films" and trail[1]["champion"] == "removed"
    assert "review_audit" not in v2.tags  # no single JSON tag that every decision rewrites


def test_approve_and_reject_need_reviewer_and_note(
    two_versions: MlflowClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _review("approve", "--version", "1", "--reviewer", "Dr Lee") == 2
    assert "needs --note TEXT" in capsys.readouterr().err
    assert _review("reject", "--version", "1", "--note", "no") == 2
    assert "name yourself with --reviewer NAME" in capsys.readouterr().err
    v1 = two_versions.get_model_version(NAME, "1")
    assert v1.tags["review_status"] == "pending" and not [k for k in v1.tags if k.startswith("review.")]


def test_self_approval_refused_unless_allowed_on_the_embedded_store(
    two_versions: MlflowClient, capsys: pytest.CaptureFixture[str]
) -> None:
    registrar = two_versions.get_model_version(NAME, "1").tags["registered_by"]
    assert registrar == f"unauthenticated:{getpass.getuser()}"
    me = registrar.split(":", 1)[1]
    assert _review("approve", "--version", "1", "--reviewer", me, "--note", "mine") == 2
    assert f"registered by {registrar}, who cannot also approve it" in capsys.readouterr().err
    with pytest.raises(Exception):
        two_versions.get_model_version_by_alias(NAME, "champion")
    assert _review("approve", "--version", "1", "--reviewer", me, "--note", "solo lab", "--allow-self-approval") == 0
    assert two_versions.get_model_version(NAME, "1").tags["reviewer"] == registrar
    assert str(two_versions.get_model_version_by_alias(NAME, "champion").version) == "1"
    assert _review("show", "--version", "1", "--reviewer", me) == 2
    assert "takes no --reviewer" in capsys.readouterr().err


def test_refuses_to_approve_random_init_or_gate_failure(
    tracking: str, make_model: Callable[..., dict], make_report: Callable[..., Path], register: Callable[..., int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_model(weights="random-init")
    make_report()
    assert register() == 0
    assert _review("approve", "--version", "1", "--reviewer", "Dr Lee", "--note", "looks fine") == 2
    assert "random-init" in capsys.readouterr().err
    client = MlflowClient()
    # A version that did not pass the gate (here registered by hand around `medvit register`).
    source = client.get_model_version(NAME, "1").source
    client.create_model_version(NAME, source, tags={"gate": "refused", "weights": "hub:timm/x",
                                                    "gate_reason": "refused: AUROC 0.6 below 0.8"})
    client.create_model_version(NAME, source, tags={"weights": "hub:timm/x"})  # no gate outcome at all
    assert _review("approve", "--version", "2", "--reviewer", "Dr Lee", "--note", "x") == 2
    assert "did not pass the quality gate" in capsys.readouterr().err
    assert _review("approve", "--version", "3", "--reviewer", "Dr Lee", "--note", "x") == 2
    assert "not registered by `medvit register`" in capsys.readouterr().err
    with pytest.raises(Exception):
        client.get_model_version_by_alias(NAME, "champion")
    # Rejecting is always allowed.
    assert _review("reject", "--version", "1", "--reviewer", "Dr Lee", "--note", "random init") == 0


def test_list_without_a_registered_model_is_a_clear_error(tracking: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _review("list") == 2
    assert "'medvit-medical' not found" in capsys.readouterr().err
    assert _review("show") == 2  # without --version, show means the candidate: there is none
    assert "has no 'candidate' version; pass --version N" in capsys.readouterr().err
    assert _review("approve") == 2
    assert "needs --version" in capsys.readouterr().err


def test_show_prints_card_tags_and_trail(two_versions: MlflowClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert _review("approve", "--version", "1", "--reviewer", "Dr Lee", "--note", "fine") == 0
    capsys.readouterr()
    assert _review("show", "--version", "1") == 0
    out = capsys.readouterr().out
    assert "review_status: approved" in out and "approve  by unauthenticated:Dr Lee: fine" in out
    assert "NOT FOR CLINICAL USE UNTIL APPROVED" in out
    assert _review("show", "--version", "9") == 2
    assert "version 9" in capsys.readouterr().err


def test_review_against_a_remote_tracking_server(
    tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch,
    make_model: Callable[..., dict], make_report: Callable[..., Path], register: Callable[..., int],
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    make_model()
    make_report()
    assert register() == 0
    assert json.loads((tmp_path / "registry" / "registration.json").read_text())["tracking_uri"] == mlflow_server
    assert _review("approve", "--version", "1", "--reviewer", "Dr Lee", "--note", "remote ok") == 0
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    v = client.get_model_version_by_alias(NAME, "champion")
    assert str(v.version) == "1" and v.tags["review_status"] == "approved"
    assert audit_trail(v)[0]["note"] == "remote ok" and v.tags["reviewer"] == "unauthenticated:Dr Lee"
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to an embedded store
    # Self-approval is an embedded-store escape hatch only.
    assert _review("approve", "--version", "1", "--reviewer", "x", "--note", "y", "--allow-self-approval") == 2


def test_registry_errors_become_user_errors_naming_the_store(tracking: str) -> None:
    from medvit.errors import UserError
    from medvit.tracking.identity import registry_errors

    with pytest.raises(UserError, match=r"the MLflow registry at sqlite:///.*mlflow\.db failed: .*no-such-model"):
        with registry_errors():
            MlflowClient().get_model_version("no-such-model", "1")
    with pytest.raises(KeyError):  # anything else is not disguised as a registry failure
        with registry_errors():
            raise KeyError("x")
