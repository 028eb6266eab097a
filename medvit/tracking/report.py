"""The review report of a registered version in the registry: log it, record its sha256, fetch it back.

The report (``medvit.evaluate.review``) is logged as an artifact of the run that
created the version (``review/review_report.html``); the version tags
``review_report_sha256`` (its digest) and ``review_report`` (its artifact path)
point at it. ``fetch_report`` returns a local copy whose sha256 equals the tag:
the given local file when it matches, else a download, refused on a mismatch.
``report_sha256`` is what ``approve`` records as the report it approved.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from medvit.errors import UserError
from medvit.hashing import sha256_file

REPORT_SHA_TAG = "review_report_sha256"
REPORT_PATH_TAG = "review_report"
ARTIFACT_DIR = "review"
REPORT_NAME = "review_report.html"


class ReportMissing(UserError):
    """The version has no review report (registered before reports existed, or outside ``medvit register``)."""


def download_folder() -> Path:
    """Where ``review show`` downloads reports: ``$XDG_CACHE_HOME/medvit/review`` (default ``~/.cache``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medvit" / "review"


def report_sha256(version: Any) -> str | None:
    """The sha256 of a ModelVersion's review report (its tag), None when it has none."""
    return version.tags.get(REPORT_SHA_TAG) or None


def run_links(client: Any, run_ids: Mapping[str, str]) -> dict[str, str]:
    """Per stage, the MLflow UI URL of its run on an http(s) server, else ``run <id> (<store>)``."""
    from medvit.tracking.registry import safe_uri

    uri = safe_uri(str(client.tracking_uri)).rstrip("/")
    links = {}
    for stage, run_id in run_ids.items():
        if not run_id or run_id == "unknown":
            continue
        try:
            experiment = client.get_run(run_id).info.experiment_id
        except Exception:  # a run of another store (e.g. trained elsewhere): keep its id, say so
            links[stage] = f"run {run_id} (not in {uri})"
            continue
        links[stage] = (f"{uri}/#/experiments/{experiment}/runs/{run_id}" if uri.startswith("http")
                        else f"run {run_id} (experiment {experiment}, store {uri})")
    return links


def upstream_runs(client: Any, finetune_run_id: str, experiment_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """The newest evaluate run that compared ``finetune_run_id`` and the zeroshot run it names, and the
    baselines' weights it recorded (``weights.<baseline>`` tags); empty when there is none."""
    if not finetune_run_id:
        return {}, {}
    try:
        experiment = client.get_experiment_by_name(experiment_name)
        runs = client.search_runs(
            [experiment.experiment_id], f"tags.stage = 'evaluate' and tags.finetune_run_id = '{finetune_run_id}'",
            order_by=["attributes.start_time DESC"], max_results=1) if experiment else []
    except Exception:  # lineage links are a convenience: a store without them still gets its report
        return {}, {}
    if not runs:
        return {}, {}
    tags = runs[0].data.tags
    weights = {k.removeprefix("weights."): v for k, v in sorted(tags.items()) if k.startswith("weights.")}
    return {"evaluate": runs[0].info.run_id, "zeroshot": tags.get("zeroshot_run_id", "")}, weights


def log_report(client: Any, name: str, version: Any, path: Path) -> str:
    """Log ``path`` with the version's run, tag its sha256 and artifact path on the version; return the sha256.

    Raises:
        UserError: the version has no run to log the report with.
    """
    if not version.run_id:
        raise UserError(f"{name} version {version.version} has no MLflow run to log its review report with; "
                        "register it through `medvit register`")
    digest = sha256_file(path)
    with tempfile.TemporaryDirectory() as tmp:  # the artifact's name is fixed whatever the local file is called
        copy = Path(tmp) / REPORT_NAME
        copy.write_bytes(path.read_bytes())
        client.log_artifact(version.run_id, str(copy), ARTIFACT_DIR)
    client.set_model_version_tag(name, version.version, REPORT_PATH_TAG, f"{ARTIFACT_DIR}/{REPORT_NAME}")
    client.set_model_version_tag(name, version.version, REPORT_SHA_TAG, digest)
    return digest


def fetch_report(client: Any, version: Any, dest: Path, local: Path | None = None) -> Path:
    """A local copy of the version's review report whose sha256 equals its tag.

    ``local`` is returned when it exists and matches; otherwise the artifact is
    downloaded into ``dest/<name>-v<version>/``.

    Raises:
        ReportMissing: the version has no report.
        UserError: the logged file's digest differs from the tag.
    """
    digest = report_sha256(version)
    where = version.tags.get(REPORT_PATH_TAG)
    if not digest or not where:
        raise ReportMissing(f"{version.name} version {version.version} has no review report (tags {REPORT_SHA_TAG!r}, "
                        f"{REPORT_PATH_TAG!r}); re-run `dvc repro register@<domain>` to log one")
    if local is not None and local.is_file() and sha256_file(local) == digest:
        return local
    import mlflow

    folder = dest / f"{version.name}-v{version.version}"
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=where, dst_path=str(folder),
                                                    tracking_uri=client.tracking_uri))
    got = sha256_file(path)
    if got != digest:
        path.unlink()
        raise UserError(f"{version.name} version {version.version}: the logged review report has sha256 {got}, "
                        f"not the {digest} recorded in its {REPORT_SHA_TAG!r} tag; it was changed after "
                        "registration. Do not review from it; re-register the model.")
    return path
