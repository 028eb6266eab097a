"""Human review of registered versions: approve (moves ``champion``) or reject, with an audit trail.

Everything lives in the registry, so it works the same against the embedded
SQLite store and a remote tracking server (``MLFLOW_TRACKING_URI``):

- version tags ``review_status`` (pending | approved | rejected), ``reviewer``,
  ``review_note``, ``reviewed_at`` (UTC, ISO 8601) hold the latest decision;
- the version tag ``review_audit`` is an append-only JSON list of every decision
  and alias move on that version (who, when, why), never rewritten in place.

Approval is refused for a version whose backbone was random-init or whose gate
outcome is not ``passed`` (including versions registered outside ``medvit register``).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

from medvit.errors import UserError
from medvit.tracking.registry import CHAMPION, PENDING, safe_uri
from medvit.tracking.runs import tracking_uri
from medvit.weights import is_random_init

APPROVED = "approved"
REJECTED = "rejected"
AUDIT_TAG = "review_audit"


def utc_now() -> str:
    """Current UTC time as ``2026-01-31T12:00:00Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def registry_errors() -> Iterator[None]:
    """Turn an MLflow failure inside the block into a UserError naming the registry (without credentials)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as err:
        raise UserError(f"the MLflow registry at {safe_uri(tracking_uri())} failed: {err}") from None


def audit_trail(version: Any) -> list[dict[str, Any]]:
    """The decoded ``review_audit`` list of a ModelVersion (empty when never reviewed)."""
    raw = version.tags.get(AUDIT_TAG)
    return json.loads(raw) if raw else []


def _not_found(name: str, what: str) -> UserError:
    return UserError(f"{what} of registered model {name!r} not found at {safe_uri(tracking_uri())}; "
                     f"list versions with `medvit review list --domain ...` or run the register stage")


def list_versions(client: Any, name: str) -> list[tuple[Any, list[str]]]:
    """All versions of ``name``, newest first, each with its aliases.

    Raises:
        UserError: the registered model does not exist.
    """
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        raise _not_found(name, "no version") from None
    aliases: dict[str, list[str]] = {}
    for alias, v in (model.aliases or {}).items():
        aliases.setdefault(str(v), []).append(alias)
    # Search results do not carry aliases; they come from the registered model.
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version), reverse=True)
    return [(v, sorted(aliases.get(str(v.version), []))) for v in versions]


def get_version(client: Any, name: str, version: int | str) -> Any:
    """One ModelVersion (with aliases, tags and description).

    Raises:
        UserError: no such version.
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise _not_found(name, f"version {version}") from None


def _append_audit(client: Any, name: str, version: Any, entry: dict[str, Any]) -> None:
    trail = audit_trail(client.get_model_version(name, str(version.version)))
    trail.append(entry)
    client.set_model_version_tag(name, str(version.version), AUDIT_TAG, json.dumps(trail))


def _require(reviewer: str | None, note: str | None, action: str) -> tuple[str, str]:
    reviewer, note = (reviewer or "").strip(), (note or "").strip()
    if not reviewer or not note:
        raise UserError(f"review {action} needs --reviewer NAME and --note TEXT (who decided, and why)")
    return reviewer, note


def approvable(version: Any) -> str | None:
    """Why ``version`` cannot be approved, or None when it can."""
    tags = version.tags
    weights = tags.get("weights", "")
    if tags.get("weights_random_init") == "true" or is_random_init(weights):
        return (f"version {version.version} was trained from random-init weights (weights={weights!r}); "
                "only a model fine-tuned from pretrained weights can be approved")
    gate = tags.get("gate")
    if gate != "passed":
        why = tags.get("gate_reason", "no gate outcome recorded: not registered by `medvit register`")
        return f"version {version.version} did not pass the quality gate (gate={gate!r}: {why})"
    return None


def approve(client: Any, name: str, version: int | str, reviewer: str | None, note: str | None) -> Any:
    """Approve ``version``: review tags, audit entry, and the ``champion`` alias moved to it.

    Raises:
        UserError: missing reviewer/note, unknown version, random-init weights or a gate that did not pass.
    """
    from mlflow.exceptions import MlflowException

    reviewer, note = _require(reviewer, note, "approve")
    v = get_version(client, name, version)
    refusal = approvable(v)
    if refusal:
        raise UserError(f"refusing to approve {name} {refusal}")
    now = utc_now()
    try:
        previous = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no champion yet
        previous = None
    entry = {"action": "approve", "reviewer": reviewer, "note": note, "at": now,
             "previous_status": v.tags.get("review_status", PENDING),
             "champion_from": previous.version if previous else None}
    for key, value in (("review_status", APPROVED), ("reviewer", reviewer), ("review_note", note),
                       ("reviewed_at", now)):
        client.set_model_version_tag(name, str(v.version), key, value)
    _append_audit(client, name, v, entry)
    client.set_registered_model_alias(name, CHAMPION, str(v.version))
    if previous is not None and str(previous.version) != str(v.version):
        _append_audit(client, name, previous, {"action": "champion_superseded", "reviewer": reviewer, "at": now,
                                               "note": f"champion moved to version {v.version}"})
    return get_version(client, name, v.version)


def reject(client: Any, name: str, version: int | str, reviewer: str | None, note: str | None) -> Any:
    """Reject ``version``: review tags and audit entry; a rejected champion loses the ``champion`` alias.

    Raises:
        UserError: missing reviewer/note or unknown version.
    """
    reviewer, note = _require(reviewer, note, "reject")
    v = get_version(client, name, version)
    now = utc_now()
    was_champion = CHAMPION in (v.aliases or [])
    entry = {"action": "reject", "reviewer": reviewer, "note": note, "at": now,
             "previous_status": v.tags.get("review_status", PENDING), "champion_removed": was_champion}
    for key, value in (("review_status", REJECTED), ("reviewer", reviewer), ("review_note", note),
                       ("reviewed_at", now)):
        client.set_model_version_tag(name, str(v.version), key, value)
    _append_audit(client, name, v, entry)
    if was_champion:
        client.delete_registered_model_alias(name, CHAMPION)
    return get_version(client, name, v.version)

