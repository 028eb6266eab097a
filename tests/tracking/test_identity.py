"""Who acts on the registry (authenticated user vs typed name) and the audit trail's entries, on the embedded store.

The authenticated side against a real basic-auth server is in test_team_server.py.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
from mlflow import MlflowClient

from medvit.errors import UserError
from medvit.tracking import identity
from medvit.tracking.review import approve, audit_trail, entry_id

NAME = "medvit-medical"


def test_typed_name_is_unauthenticated_on_the_embedded_store(tracking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")  # ignored: nothing on a SQLite store checks it
    assert identity.authenticated_user() is None
    assert identity.reviewer(" Dr Lee ") == identity.Identity("unauthenticated:Dr Lee", False)
    assert identity.registering_user().startswith("unauthenticated:")
    with pytest.raises(UserError, match="name yourself with --reviewer NAME"):
        identity.reviewer("  ")


def test_authenticated_user_on_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.org")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    assert identity.reviewer(None) == identity.Identity("alice", True)
    assert identity.registering_user() == "alice"
    with pytest.raises(UserError, match=r"--reviewer is not accepted .*MLFLOW_TRACKING_USERNAME=alice"):
        identity.reviewer("Dr Lee")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")  # a server without credentials: only a typed name
    assert identity.reviewer("Dr Lee") == identity.Identity("unauthenticated:Dr Lee", False)


def test_audit_entries_are_unique_and_time_ordered() -> None:
    ids = [entry_id() for _ in range(200)]
    stamps = [i.split("-")[0] for i in ids]  # entries within one microsecond may sort either way
    assert len(set(ids)) == 200 and stamps == sorted(stamps)
    tags = {"review.20260101T000000000001Z-aaaaaa.user": "b", "review.20260101T000000000001Z-aaaaaa.decision": "reject",
            "review.20250101T000000000000Z-ffffff.user": "a", "review.20250101T000000000000Z-ffffff.decision": "approve",
            "review_report_sha256": "0" * 64, "review_status": "rejected"}
    trail = audit_trail(SimpleNamespace(tags=tags))
    assert [(e["user"], e["decision"]) for e in trail] == [("a", "approve"), ("b", "reject")]


def test_approving_the_champion_again_keeps_it_and_adds_an_entry(
    tracking: str, make_model: Callable[..., dict], make_report: Callable[..., Path], register: Callable[..., int],
) -> None:
    make_model()
    make_report()
    assert register() == 0
    client = MlflowClient()
    for who, note in (("Dr Lee", "first read"), ("Dr Kim", "second read")):
        approve(client, NAME, 1, identity.reviewer(who), note)
    trail = audit_trail(client.get_model_version(NAME, "1"))
    assert [(e["user"], e["champion"], e["note"]) for e in trail] == [
        ("unauthenticated:Dr Lee", "set", "first read"), ("unauthenticated:Dr Kim", "kept", "second read")]
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
