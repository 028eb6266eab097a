"""Human review of registered versions: approve (moves ``champion``) or reject, with an audit trail.

Everything lives in the registry, so it works the same against the embedded
SQLite store and a tracking server (``MLFLOW_TRACKING_URI``):

- version tags ``review_status`` (pending | approved | rejected), ``reviewer``,
  ``review_note``, ``reviewed_at`` (UTC, ISO 8601) hold the latest decision;
- the audit trail is append-only: each decision (and each ``champion`` move away
  from a version) is its own set of version tags ``review.<n>.user``,
  ``.decision``, ``.at``, ``.note`` and ``.report_sha256``, where ``<n>`` is a new,
  time-ordered, random-suffixed id. No tag is read, modified and written back, so
  two reviewers deciding at once both stay in the trail.

Who may decide is ``medvit.tracking.identity``'s business (the authenticated MLflow
user, MANAGE on the registered model). The user who registered a version
(``registered_by``) cannot approve it; ``--allow-self-approval`` lifts that only on
the embedded store. Approval is refused for a version whose backbone was
random-init or whose gate outcome is not ``passed`` (including versions registered
outside ``medvit register``). ``approve`` records the sha256 of the version's review
report (version tag ``review_report_sha256``, set when the report is logged).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from medvit.errors import UserError
from medvit.tracking.identity import REVIEW_PERMISSION, Identity, require_permission, uses_server
from medvit.tracking.registry import CHAMPION, PENDING, REGISTERED_BY, safe_uri
from medvit.tracking.report import REPORT_SHA_TAG
from medvit.tracking.runs import tracking_uri
from medvit.weights import is_random_init

APPROVED = "approved"
REJECTED = "rejected"
AUDIT_PREFIX = "review."


def utc_now() -> str:
    """Current UTC time as ``2026-01-31T12:00:00Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_id() -> str:
    """A new audit entry id: UTC time to the microsecond plus 24 random bits (sorts in time order)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def audit_trail(version: Any) -> list[dict[str, str]]:
    """The audit entries of a ModelVersion (its ``review.<n>.*`` tags), oldest first; empty when never reviewed."""
    entries: dict[str, dict[str, str]] = {}
    for key, value in version.tags.items():
        if key.startswith(AUDIT_PREFIX) and key.count(".") >= 2:
            eid, field = key[len(AUDIT_PREFIX):].rsplit(".", 1)
            entries.setdefault(eid, {"id": eid})[field] = value
    return [entries[eid] for eid in sorted(entries)]


def _append_entry(client: Any, name: str, version: str, fields: dict[str, str]) -> None:
    """Write one audit entry as new tags (nothing existing is read or rewritten)."""
    eid = entry_id()
    for field, value in fields.items():
        client.set_model_version_tag(name, version, f"{AUDIT_PREFIX}{eid}.{field}", value)


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
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
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
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":  # 401, 403, server down: registry_errors says which
            raise
        raise _not_found(name, f"version {version}") from None


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


def check_reviewer(name: str, who: Identity, action: str, allow_self_approval: bool = False) -> None:
    """Refuse a reviewer who may not decide on ``name`` (before anything is written).

    Raises:
        UserError: ``--allow-self-approval`` on a server, or an authenticated user below MANAGE.
    """
    if allow_self_approval and uses_server():
        raise UserError("--allow-self-approval exists only for the embedded store; on a tracking server another "
                        "user must approve a version (segregation of duties)")
    if who.authenticated:
        require_permission(who.user, name, REVIEW_PERMISSION, f"medvit review {action}")


def self_approval(version: Any, who: Identity, allow_self_approval: bool) -> str | None:
    """Why ``who`` may not approve ``version`` they registered, or None."""
    registered_by = version.tags.get(REGISTERED_BY)
    if registered_by is None:
        if who.authenticated:
            return (f"version {version.version} has no {REGISTERED_BY} tag (registered outside `medvit register`), "
                    "so segregation of duties cannot be checked")
        return None
    if registered_by == who.user and not allow_self_approval:
        how = "" if uses_server() else " (on the embedded store, --allow-self-approval permits it)"
        return f"version {version.version} was registered by {who.user}, who cannot also approve it{how}"
    return None


def _decide(client: Any, name: str, v: Any, who: Identity, note: str, status: str, decision: str,
            **fields: str) -> None:
    """One audit entry, then the latest-decision tags (upserts: the trail is the record)."""
    now = utc_now()
    _append_entry(client, name, str(v.version), {"user": who.user, "decision": decision, "at": now, "note": note,
                                                 **fields})
    for key, value in (("review_status", status), ("reviewer", who.user), ("review_note", note),
                       ("reviewed_at", now)):
        client.set_model_version_tag(name, str(v.version), key, value)


def _note(note: str | None, action: str) -> str:
    note = (note or "").strip()
    if not note:
        raise UserError(f"review {action} needs --note TEXT (why)")
    return note


def approve(client: Any, name: str, version: int | str, who: Identity, note: str | None,
            allow_self_approval: bool = False) -> Any:
    """Approve ``version``: an audit entry, the review tags, and the ``champion`` alias moved to it.

    Raises:
        UserError: missing note, a reviewer who may not approve it, unknown version, random-init weights
            or a gate that did not pass.
    """
    from mlflow.exceptions import MlflowException

    note = _note(note, "approve")
    check_reviewer(name, who, "approve", allow_self_approval)
    v = get_version(client, name, version)
    refusal = approvable(v) or self_approval(v, who, allow_self_approval)
    if refusal:
        raise UserError(f"refusing to approve {name} {refusal}")
    try:
        previous = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no champion yet
        previous = None
    if previous is None:
        champion = "set"
    elif str(previous.version) == str(v.version):
        champion = "kept"
    else:
        champion = f"moved from version {previous.version}"
    _decide(client, name, v, who, note, APPROVED, "approve", report_sha256=v.tags.get(REPORT_SHA_TAG, "none"),
            champion=champion)
    client.set_registered_model_alias(name, CHAMPION, str(v.version))
    if previous is not None and str(previous.version) != str(v.version):
        _append_entry(client, name, str(previous.version),
                      {"user": who.user, "decision": "champion_superseded", "at": utc_now(),
                       "note": f"champion moved to version {v.version}"})
    return get_version(client, name, v.version)


def reject(client: Any, name: str, version: int | str, who: Identity, note: str | None) -> Any:
    """Reject ``version``: an audit entry and the review tags; a rejected champion loses the ``champion`` alias.

    Raises:
        UserError: missing note, a reviewer who may not decide, or an unknown version.
    """
    note = _note(note, "reject")
    check_reviewer(name, who, "reject")
    v = get_version(client, name, version)
    was_champion = CHAMPION in (v.aliases or [])
    _decide(client, name, v, who, note, REJECTED, "reject", report_sha256=v.tags.get(REPORT_SHA_TAG, "none"), champion="removed" if was_champion else "none")
    if was_champion:
        client.delete_registered_model_alias(name, CHAMPION)
    return get_version(client, name, v.version)
