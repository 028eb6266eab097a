"""MLflow runs for pipeline stages: lineage tags and logging that never sinks a stage.

The embedded default store is SQLite at ``.mlflow/mlflow.db`` with artifacts in
``.mlflow/artifacts`` (git- and DVC-ignored). ``MLFLOW_TRACKING_URI`` switches to a
team server. Every MLflow call goes through ``StageRun``, which bounds HTTP
time-outs and retries and, on the first failure, reports it once and turns
further logging into no-ops, so a finished training still writes its outputs.
An http(s) server is probed with a short TCP connect first, and
``MEDVIT_TRACKING=off`` disables tracking altogether.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlparse

log = logging.getLogger(__name__)

EMBEDDED_DIR = ".mlflow"
# Bound every HTTP call so a tracking server that is down cannot hang a stage. mlflow 3.17 reads
# these at each request (mlflow/utils/rest_utils.py: http_request): a call then takes at most about
# TIMEOUT x (1 + MAX_RETRIES) plus backoff (urllib3 sleeps 0 before the first retry) + JITTER seconds.
# setdefault: a user's own values win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
}
# MEDVIT_TRACKING=off skips MLflow entirely (CI, smoke runs); StageRun.error stays None.
DISABLE_ENV = "MEDVIT_TRACKING"
# TCP connect probe of an http(s) tracking server before any MLflow call (seconds).
PROBE_TIMEOUT_S = 5.0


def repo_root() -> Path:
    """The git work tree containing the current directory (or the cwd)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True, timeout=10
        )
        return Path(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return Path.cwd()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = repo_root() / EMBEDDED_DIR
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def artifact_root() -> str | None:
    """Artifact location for new experiments: beside a local SQLite store, else the server's default (None).

    A ``MLFLOW_TRACKING_URI=sqlite:///path/mlflow.db`` keeps artifacts in ``path/artifacts``
    instead of MLflow's default ``./mlruns`` in whatever directory the stage ran from.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return (repo_root() / EMBEDDED_DIR / "artifacts").as_uri()
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts").as_uri()
    return None


def git_commit() -> str:
    """Current commit sha, suffixed ``-dirty`` when the work tree has changes; ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def experiment_name(domain: str) -> str:
    """One MLflow experiment per domain."""
    return f"medvit-{domain}"


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested params to ``a.b.c`` keys (lists become JSON strings)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(list(v))
        else:
            out[key] = v
    return out


class StageRun:
    """A best-effort handle on one MLflow run; every method is safe to call after a failure."""

    def __init__(self, mlflow_mod: Any | None, run_id: str | None, error: str | None = None) -> None:
        self._mlflow = mlflow_mod
        self.run_id = run_id
        self.error = error

    @property
    def active(self) -> bool:
        return self._mlflow is not None and self.error is None

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.active:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking must never sink a stage
            self.error = f"{what} failed: {type(err).__name__}: {err}"
            warnings.warn(
                f"MLflow logging disabled for the rest of this stage ({self.error}). "
                f"Outputs are still written; check MLFLOW_TRACKING_URI ({tracking_uri()}).",
                stacklevel=2,
            )
            return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.active:
            return
        items = [(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self._call("log_params", self._mlflow.log_params, dict(items[i : i + 100]))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.active:
            clean = {k: float(v) for k, v in metrics.items() if v is not None}
            self._call("log_metrics", self._mlflow.log_metrics, clean, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.active:
            self._call("set_tags", self._mlflow.set_tags, {k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.active:
            self._call("log_artifact", self._mlflow.log_artifact, str(path), artifact_path)

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.active:
            self._call("log_artifacts", self._mlflow.log_artifacts, str(path), artifact_path)


def probe(uri: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if an http(s) tracking server accepts a TCP connection (or the store is not http), else why not."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return None
    except OSError as err:
        return f"tracking server {parsed.hostname}:{port} unreachable ({type(err).__name__}: {err})"


def _finish(mlflow_mod: Any, run: StageRun, status: str) -> None:
    """End the run even after a logging failure, so the system-metrics thread stops and no run stays active."""
    try:
        mlflow_mod.end_run(status=status)
    except Exception as err:  # noqa: BLE001 - set_terminated failed (server down): stop the monitor ourselves
        run.error = run.error or f"end_run failed: {type(err).__name__}: {err}"
        try:
            from mlflow.tracking.fluent import run_id_to_system_metrics_monitor

            monitor = run_id_to_system_metrics_monitor.pop(run.run_id, None)
            if monitor is not None:
                monitor.finish()
        except Exception:  # noqa: BLE001, S110 - best effort on a private API
            pass


@contextmanager
def stage_run(
    stage: str,
    domain: str,
    tags: Mapping[str, Any],
    run_name: str | None = None,
    system_metrics: bool = False,
) -> Iterator[StageRun]:
    """Open an MLflow run for ``stage`` on ``domain`` with lineage ``tags``.

    Yields a ``StageRun``; if the tracking store cannot be reached, it yields an
    inactive one carrying the error, so the stage finishes and can record it.
    """
    if os.environ.get(DISABLE_ENV, "").lower() in ("0", "off", "false", "no"):
        log.info("MLflow tracking disabled by %s=%s", DISABLE_ENV, os.environ[DISABLE_ENV])
        yield StageRun(None, None)
        return
    for k, v in HTTP_DEFAULTS.items():
        os.environ.setdefault(k, v)
    commit = git_commit()
    all_tags = {"git_commit": commit, "domain": domain, "stage": stage, **{k: str(v) for k, v in tags.items()}}
    name = run_name or f"{stage}-{domain}-{commit[:7]}"
    try:
        unreachable = probe(tracking_uri())
        if unreachable:
            raise ConnectionError(unreachable)
        import mlflow

        mlflow.set_tracking_uri(tracking_uri())
        exp_name = experiment_name(domain)
        exp = mlflow.get_experiment_by_name(exp_name)
        exp_id = exp.experiment_id if exp else mlflow.create_experiment(exp_name, artifact_location=artifact_root())
        active = mlflow.start_run(experiment_id=exp_id, run_name=name, tags=all_tags, log_system_metrics=system_metrics)
        run = StageRun(mlflow, active.info.run_id)
    except Exception as err:  # noqa: BLE001
        msg = f"could not start an MLflow run at {tracking_uri()}: {type(err).__name__}: {err}"
        warnings.warn(msg + " -- continuing without tracking; outputs are still written.", stacklevel=2)
        yield StageRun(None, None, msg)
        return
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        _finish(mlflow, run, status)
