"""The MLflow Model Registry side of the register stage: versions, their tags and the servable model.

One registered model per domain, ``medvit-<domain>``. ``find_version`` looks a
version up by the ``weights_sha256`` and ``thresholds_sha256`` version tags, so the
register stage creates one only for new weights or thresholds and a re-run on an
unchanged model is a no-op. New versions get the ``candidate`` alias and
``review_status=pending``; ``medvit review`` moves ``champion``. Aliases and tags
are used, not the deprecated stages. The quality gate and the readers of
evaluate's outputs live in ``medvit.evaluate`` (``gate``, ``outputs``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from medvit.evaluate.intervals import Reliability
from medvit.hashing import sha256_json
from medvit.metrics import COUNTS, METRICS
from medvit.tracking.identity import registering_user
from medvit.tracking.runs import HTTP_DEFAULTS, tracking_uri
from medvit.weights import is_random_init

CANDIDATE = "candidate"
CHAMPION = "champion"
PENDING = "pending"
REGISTERED_BY = "registered_by"  # version tag: who registered it (segregation of duties in review)
CI_SUFFIXES = ("", "_ci_low", "_ci_high")


def registered_model_name(domain: str) -> str:
    """``medvit-medical`` or ``medvit-satellite``."""
    return f"medvit-{domain}"


# --------------------------------------------------------------------------- fingerprints and tags
def thresholds_sha256(label_names: Sequence[str], thresholds: Sequence[float]) -> str:
    """Hex sha256 of the canonical JSON of the per-label thresholds (the ``thresholds_sha256`` tag)."""
    return sha256_json({"label_names": list(label_names), "thresholds": [float(t) for t in thresholds]})


def _number_tag(value: Any) -> str | None:
    """``0.912345`` style text of a finite number, None for a missing or NaN one."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return f"{float(value):.6g}"


def metric_tags(finetune: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Version tags from ``metrics.METRICS``: every test summary with its CI and the counts; per baseline,
    its headline macro summaries and their paired differences, with CIs."""
    tags: dict[str, str] = {}
    names = [s for m in METRICS for s in m.summaries] + list(COUNTS)
    for key in (f"test/{n}{suffix}" for n in names for suffix in CI_SUFFIXES):
        if (text := _number_tag(finetune.get(key))) is not None:
            tags[key] = text
    headline = [f"{m.name}_macro" for m in METRICS if m.headline]
    headline += [f"{m.name}_macro_diff" for m in METRICS if m.headline and m.paired]
    for name, metrics in baselines.items():
        for key in (f"test/{n}{suffix}" for n in headline for suffix in CI_SUFFIXES):
            if (text := _number_tag(metrics.get(key))) is not None:
                tags[f"baseline/{name}/{key}"] = text
    n, least = finetune.get("test/n_groups"), finetune.get("min_groups")
    if n is not None and least is not None:  # issue #14: an interval from too few groups says so
        ok = Reliability(int(n), int(least)).reliable
        tags["ci_reliability"] = (f"reliable: {int(n)} test groups >= min_groups {int(least)}" if ok else
                                  f"unreliable: {int(n)} test groups < min_groups {int(least)}")
    return tags


def version_tags(
    meta: Mapping[str, Any],
    *,
    finetune: Mapping[str, Any],
    baselines: Mapping[str, Mapping[str, Any]],
    threshold_method: str,
    gate_passed: bool,
    gate_reason: str,
    weights_sha: str,
    thresholds_sha: str,
    git_commit: str,
    run_id: str | None,
    onnx_opset: int | None,
    onnx_diff: float | None,
) -> dict[str, str]:
    """The tags of a new version: review state, lineage, weights provenance, gate outcome, test metrics.

    Args:
        meta: models/<d>/meta.json.
        finetune: the fine-tuned model's metrics from evaluate's metrics.json.
        baselines: per baseline, its metrics.
        threshold_method: how evaluate chose the thresholds.
        gate_passed: the quality gate's outcome.
        gate_reason: its one-line summary.
        weights_sha: sha256 of model.safetensors.
        thresholds_sha: ``thresholds_sha256`` of the version's thresholds.
        git_commit: the code version.
        run_id: the register stage's MLflow run.
        onnx_opset: opset of the ONNX export logged with the version (None: no export).
        onnx_diff: its max abs logit difference to PyTorch.
    """
    tags = {
        "review_status": PENDING,
        "gate": "passed" if gate_passed else "refused",
        "gate_reason": gate_reason,
        "weights": str(meta.get("weights", "unknown")),
        "weights_random_init": str(is_random_init(str(meta.get("weights", "")))).lower(),
        "weights_sha256": weights_sha,
        "thresholds_sha256": thresholds_sha,
        "threshold_method": threshold_method,
        "label_names": json.dumps(list(meta["label_names"])),
        "model": str(meta["model"]),
        "data_hash": str(meta.get("data_hash", "unknown")),
        "params_hash": str(meta.get("params_hash", "unknown")),
        "pipeline_id": str(meta.get("pipeline_id", "unknown")),
        "finetune_run_id": str(meta.get("run_id", "unknown")),
        "register_run_id": str(run_id),
        "git_commit": git_commit,
        "onnx_opset": str(onnx_opset) if onnx_opset else "none",
    }
    if onnx_diff is not None:
        tags["onnx_max_abs_diff"] = f"{onnx_diff:.3g}"
    tags.update(metric_tags(finetune, baselines))
    return tags


def safe_uri(uri: str) -> str:
    """A tracking URI without user:password, fit for a record file."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


# --------------------------------------------------------------------------- registry
def client() -> Any:
    """An ``MlflowClient`` on the project's tracking and registry URI (MLFLOW_TRACKING_URI or embedded)."""
    from mlflow import MlflowClient

    for key, value in HTTP_DEFAULTS.items():  # bounded time-outs: a down server fails fast
        os.environ.setdefault(key, value)
    uri = tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def find_version(mlflow_client: Any, name: str, weights_sha: str, thresholds_sha: str) -> Any | None:
    """The newest version of ``name`` with these weights and thresholds, or None."""
    versions = mlflow_client.search_model_versions(f"name = '{name}' and tags.weights_sha256 = '{weights_sha}'")
    same = [v for v in versions if v.tags.get("thresholds_sha256") == thresholds_sha]
    if not same:
        return None
    # Search results do not carry aliases; fetch the full version.
    return mlflow_client.get_model_version(name, max(same, key=lambda v: int(v.version)).version)


def _pip_requirements() -> list[str]:
    """Pinned runtime requirements of the servable model (no inference: that would load it in a subprocess)."""
    from importlib.metadata import version

    # The raw-file path (medvit.data.preprocess) decodes DICOM, PNG/JPEG and GeoTIFF in the served model.
    dists = ("torch", "timm", "safetensors", "numpy", "pandas", "pydantic", "pyyaml", "pydicom", "python-gdcm",
             "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "pillow", "opencv-python-headless", "rasterio")
    return [f"{dist}=={version(dist).split('+')[0]}" for dist in dists]


def log_servable_model(
    model_dir: Path,
    label_names: Sequence[str],
    thresholds: Sequence[float],
    threshold_method: str,
    onnx_path: Path | None = None,
    registered_model: str | None = None,
) -> Any:
    """Log the pyfunc (from code, safetensors artifacts) to the active MLflow run; returns its ModelInfo.

    The model takes a cache-scaled float (N, C, H, W) tensor or a frame with a
    binary ``file`` column of raw files (``pyfunc.INPUTS``). An MLflow signature
    describes one input kind, so the signature declares the output columns, and
    both inputs are listed in the MLmodel ``metadata`` (``medvit_inputs``; the pyfunc
    checks them itself). The input example is a seeded uniform random batch at
    img_size, never patient pixels. ``registered_model`` (metadata) lets the served
    model report its name and look its version up.
    """
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    from medvit.tracking import pyfunc

    meta = json.loads((model_dir / "meta.json").read_text())
    channels, size = int(meta["in_chans"]), int(meta["img_size"])
    outputs = ([ColSpec("long", "input"), ColSpec("string", "id"), ColSpec("string", "bounds")]
               + [ColSpec("double", pyfunc.SCORE_PREFIX + n) for n in label_names]
               + [ColSpec("long", pyfunc.LABEL_PREFIX + n) for n in label_names]
               + [ColSpec("string", c) for c in pyfunc.META_COLUMNS])
    signature = ModelSignature(inputs=None, outputs=Schema(outputs))
    example = np.random.default_rng(0).random((1, channels, size, size), dtype=np.float32)
    package = Path(__file__).resolve().parents[1]  # the medvit package, shipped as code with the model
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        clf = tmp_dir / "classifier"
        clf.mkdir()
        for name in ("model.safetensors", "meta.json"):
            shutil.copy2(model_dir / name, clf / name)
        spec = tmp_dir / "thresholds.json"
        spec.write_text(json.dumps({"label_names": list(label_names), "thresholds": [float(t) for t in thresholds],
                                    "method": threshold_method, "rule": "positive when score >= threshold"}))
        code = tmp_dir / "code" / "medvit"
        shutil.copytree(package, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        artifacts = {"classifier": str(clf), "thresholds": str(spec)}
        if onnx_path is not None:
            artifacts["onnx"] = str(onnx_path)
        metadata = {"medvit_inputs": dict(pyfunc.INPUTS), "raw_files": bool(meta.get("preprocess")),
                    "registered_model": registered_model or "unknown"}
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=pyfunc.__file__,
            artifacts=artifacts,
            code_paths=[str(code)],
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
            metadata=metadata,
        )


def register_version(
    mlflow_client: Any,
    name: str,
    model_info: Any,
    run_id: str,
    tags: Mapping[str, str],
    card: str,
) -> Any:
    """Create the registered model if needed, then a version with ``tags``, the card and ``registered_by``
    (the authenticated MLflow user, else ``unauthenticated:<OS user>``); alias ``candidate``."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(
            name,
            tags={"project": "medvit"},
            description=(f"medvit fine-tuned classifier ({name}). Each version's description is its model card; "
                         "`champion` is the approved version, `candidate` the newest pending one."),
        )
    version = mlflow_client.create_model_version(
        name, source=model_info.model_uri, run_id=run_id, tags={**tags, REGISTERED_BY: registering_user()},
        description=card, model_id=getattr(model_info, "model_id", None),
    )
    mlflow_client.set_registered_model_alias(name, CANDIDATE, version.version)
    return mlflow_client.get_model_version(name, version.version)
