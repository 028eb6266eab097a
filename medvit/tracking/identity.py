"""Who acts on the registry, what they may do, and MLflow failures as one-line errors.

On a tracking server with authentication (``mlflow server --app-name basic-auth``,
reached with ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``) the actor
is the authenticated MLflow user: the server checks the password on every request.
Anywhere else (the embedded SQLite store, a server without authentication) a name
is only typed, and is recorded as ``unauthenticated:<name>``.

Permissions are MLflow's, enforced by the server. Registering needs EDIT on the
experiments and on ``medvit-<domain>``. MLflow lets EDIT set an alias but needs
MANAGE to delete one (``DeleteRegisteredModelAlias`` checks ``can_delete``); reject
deletes ``champion``, and an approval must not be open to everyone who can
register, so ``medvit review approve`` and ``reject`` need MANAGE on the registered
model and check it (through the auth app's permissions API) before writing anything.
"""

from __future__ import annotations

import getpass
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from medvit.errors import UserError
from medvit.tracking.runs import tracking_uri

UNAUTHENTICATED = "unauthenticated:"
REVIEW_PERMISSION = "MANAGE"
REGISTER_PERMISSION = "EDIT"
# MLflow's permission order (mlflow.server.auth.permissions.PERMISSION_PRIORITY).
RANK = {"DENY": -1, "NO_PERMISSIONS": 0, "READ": 1, "USE": 2, "EDIT": 3, "MANAGE": 4}


@dataclass(frozen=True)
class Identity:
    """The acting user as recorded in tags: an MLflow user name or ``unauthenticated:<name>``."""

    user: str
    authenticated: bool


def uses_server(uri: str | None = None) -> bool:
    """True when the registry is a tracking server (http/https), not the embedded store."""
    return (uri or tracking_uri()).split("://", 1)[0].lower() in ("http", "https")


def authenticated_user() -> str | None:
    """The MLflow user a server authenticates (``MLFLOW_TRACKING_USERNAME``); None for the embedded store."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "").strip()
    return user if user and uses_server() else None


def reviewer(typed: str | None) -> Identity:
    """The reviewer: the authenticated user on a server with authentication, else the typed name.

    Raises:
        UserError: ``--reviewer`` given on an authenticated server, or missing elsewhere.
    """
    typed = (typed or "").strip()
    user = authenticated_user()
    if user:
        if typed:
            raise UserError(f"--reviewer is not accepted on a tracking server with authentication: the reviewer is "
                            f"the authenticated MLflow user (MLFLOW_TRACKING_USERNAME={user}); leave --reviewer out")
        return Identity(user, True)
    if not typed:
        raise UserError("this store has no authentication: name yourself with --reviewer NAME "
                        "(recorded as unauthenticated:NAME); on a team server set MLFLOW_TRACKING_USERNAME "
                        "and MLFLOW_TRACKING_PASSWORD instead")
    return Identity(UNAUTHENTICATED + typed, False)


def registering_user() -> str:
    """Who registers a version: the authenticated user, else ``unauthenticated:<OS user>``."""
    user = authenticated_user()
    if user:
        return user
    try:
        return UNAUTHENTICATED + getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return UNAUTHENTICATED + "unknown"


def require_permission(user: str, registered_model: str, needed: str, action: str) -> str:
    """Check ``user``'s own permission on ``registered_model`` with the server; returns its name.

    Raises:
        UserError: the permission is below ``needed`` (names both and who can grant it).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    from medvit.tracking.registry import safe_uri  # registry imports this module

    uri = tracking_uri()
    with registry_errors(f"{needed} on registered model {registered_model!r}", action):
        try:
            have = get_app_client("basic-auth", tracking_uri=uri).get_user_permission(
                user, "registered_model", registered_model).permission
        except MlflowException as err:
            if " 404 " not in str(err):
                raise
            raise UserError(f"the MLflow server at {safe_uri(uri)} has no authentication (no basic-auth app) but "
                            "MLFLOW_TRACKING_USERNAME is set: unset it, or start the server with "
                            "--app-name basic-auth") from None
    if RANK.get(have, 0) < RANK[needed]:
        raise UserError(f"{action} needs {needed} on registered model {registered_model!r}; MLflow user {user!r} "
                        f"has {have}. Ask an MLflow admin to grant it (see README, Team server)")
    return have


def _message(err: Exception, needed: str | None, action: str) -> str:
    from medvit.tracking.registry import safe_uri  # registry imports this module

    uri = safe_uri(tracking_uri())
    code, text = getattr(err, "error_code", ""), str(err)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "(none)"
    if code == "UNAUTHENTICATED":
        return (f"the MLflow server at {uri} did not accept the credentials of MLFLOW_TRACKING_USERNAME={user}: "
                "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    if code == "PERMISSION_DENIED":
        what = f"{action} needs {needed}" if needed else f"{action} needs a permission"
        return f"the MLflow server at {uri} refused MLflow user {user!r}: {what}; ask an MLflow admin to grant it"
    unreachable = ("Failed to establish a new connection", "Max retries exceeded", "Read timed out")
    if uses_server() and any(marker in text for marker in unreachable):
        return f"cannot reach the MLflow server at {uri}: is it running? (MLFLOW_TRACKING_URI)"
    return f"the MLflow registry at {uri} failed: {text}"


@contextmanager
def registry_errors(needed: str | None = None, action: str = "this command") -> Iterator[None]:
    """Turn an MLflow failure inside the block into a one-line UserError (never showing credentials).

    Args:
        needed: the permission the block needs, named when the server answers 403.
        action: the command, for the message.
    """
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as err:
        raise UserError(_message(err, needed, action)) from None
