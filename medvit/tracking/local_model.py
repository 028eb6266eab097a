"""A registered (or downloaded) servable model as local files, for ``medvit predict``.

``resolve_model`` accepts:

* ``models:/medvit-<domain>@<alias>`` (``champion``, ``candidate``) or
  ``models:/medvit-<domain>/<version>``: looked up on the configured tracking
  server (``MLFLOW_TRACKING_URI`` or the embedded SQLite store) and its
  artifacts downloaded from there, the only network it touches;
* a local folder holding an MLflow model (``MLmodel``), e.g. from
  ``mlflow artifacts download -u models:/medvit-medical@champion -d ./model``;
* the finetune stage's own output folder (``models/<domain>``: ``model.safetensors``
  + ``meta.json``) with evaluate's ``reports/<domain>/thresholds.json`` as
  ``thresholds``: the unregistered model, as the pipeline's ``predict`` stage uses it.

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


def resolve_model(ref: str, download_dir: Path, thresholds: Path | None = None) -> LocalModel:
    """The model ``ref`` names, with its artifacts on local disk (downloaded into ``download_dir``).

    ``thresholds`` (evaluate's ``thresholds.json``) is needed, and only allowed, with a finetune
    output folder.

    Raises:
        UserError: a malformed URI, an unknown model / alias / version, an unreachable
            tracking server, or a folder that is not a medvit MLflow model or finetune output.
    """
    match = _URI.match(ref)
    if match is None and ref.startswith("models:/"):
        raise UserError(f"--model {ref!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
    folder = Path(ref)
    finetuned = match is None and (folder / "meta.json").is_file() and (folder / "model.safetensors").is_file()
    if finetuned != (thresholds is not None):
        raise UserError(f"--thresholds goes with a finetune output folder (model.safetensors + meta.json) as --model; "
                        f"{ref!r} is {'one' if finetuned else 'not one'}")
    if finetuned:
        return _finetuned(folder, Path(thresholds), download_dir)  # type: ignore[arg-type]
    if match is None:
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


def _finetuned(folder: Path, thresholds: Path, download_dir: Path) -> LocalModel:
    """A finetune output folder with evaluate's thresholds.json, as the registered artifacts would hold them."""
    import json

    try:
        spec = json.loads(thresholds.read_text())
        names = list(spec["label_names"])
        values = [float(spec["thresholds"][n]) for n in names]  # evaluate writes {label: threshold}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"--thresholds {thresholds}: not evaluate's thresholds.json ({type(err).__name__}: {err}); "
                        "run the evaluate stage first") from None
    download_dir.mkdir(parents=True, exist_ok=True)
    converted = download_dir / "thresholds.json"
    converted.write_text(json.dumps({"label_names": names, "thresholds": values, "method": spec.get("method")}))
    return LocalModel(folder, converted, f"{folder.resolve().name} (not registered)", "local")
