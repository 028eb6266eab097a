"""A registered (or downloaded) servable model as local files, for ``medvit predict``.

``resolve_model`` accepts:

* ``models:/medvit-<domain>@<alias>`` (``champion``, ``candidate``) or
  ``models:/medvit-<domain>/<version>``: looked up on the configured tracking
  server (``MLFLOW_TRACKING_URI`` or the embedded SQLite store) and its
  artifacts downloaded from there, the only network it touches;
* a local folder holding an MLflow model (``MLmodel``), e.g. from
  ``mlflow artifacts download -u models:/medvit-medical@champion -d ./model``.

It returns the folder's ``classifier`` (safetensors + meta.json) and
``thresholds`` artifacts as ``medvit.tracking.registry.log_servable_model``
logged them; the model code is never imported from the download (predict runs
the installed medvit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from medvit.errors import UserError
from medvit.tracking.registry import client, safe_uri
from medvit.tracking.runs import tracking_uri

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class LocalModel:
    """Where the classifier and thresholds artifacts lie, and which registered version they are."""

    classifier: Path        # folder: model.safetensors + meta.json
    thresholds: Path        # thresholds.json
    name: str               # registered model name, or the folder name for a local model
    version: str            # registered version, "local" for a folder


def resolve_model(ref: str, download_dir: Path) -> LocalModel:
    """The model ``ref`` names, with its artifacts on local disk (downloaded into ``download_dir``).

    Raises:
        UserError: a malformed URI, an unknown model / alias / version, an unreachable
            tracking server, or a folder that is not a medvit MLflow model.
    """
    match = _URI.match(ref)
    if match is None:
        if ref.startswith("models:/"):
            raise UserError(f"--model {ref!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
        folder = Path(ref)
        if not folder.is_dir():
            raise UserError(f"--model {ref!r}: no such folder, and not a models:/ URI")
        return _artifacts(folder, folder.resolve().name, "local")
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    name = match["name"]
    mlflow_client = client()
    try:
        if match["alias"]:
            version = str(mlflow_client.get_model_version_by_alias(name, match["alias"]).version)
        else:
            version = str(mlflow_client.get_model_version(name, match["version"]).version)
        dst = download_dir / f"{name}-v{version}"
        dst.mkdir(parents=True, exist_ok=True)
        local = download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dst),
                                   tracking_uri=tracking_uri())
    except MlflowException as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--model {ref}: {first} (tracking URI {safe_uri(tracking_uri())}; "
                        "`medvit review list --domain <domain>` lists the versions)") from None
    return _artifacts(Path(local), name, version)


def _artifacts(folder: Path, name: str, version: str) -> LocalModel:
    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        raise UserError(f"{folder}: no MLmodel file; --model needs a registered model URI or a folder from "
                        "`mlflow artifacts download -u models:/<name>/<version> -d DIR` of a medvit model")
    flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
    artifacts = flavor.get("artifacts") or {}
    paths = {}
    for key in ("classifier", "thresholds"):
        entry = artifacts.get(key) or {}
        if "path" not in entry:
            raise UserError(f"{mlmodel}: no '{key}' artifact; not a medvit servable model "
                            "(it is logged by the register stage)")
        paths[key] = folder / entry["path"]
    return LocalModel(paths["classifier"], paths["thresholds"], name, version)
