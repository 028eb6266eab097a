"""The quality gate and the MLflow Model Registry side of the register stage.

One registered model per domain, ``medvit-<domain>``. A version is created only
when the gate passes and no version already holds the same weights and thresholds
(looked up by the ``weights_sha256`` and ``thresholds_sha256`` version tags), so
re-running register on an unchanged model is a no-op. New versions get the
``candidate`` alias and ``review_status=pending``; ``medvit review`` moves
``champion``. Aliases and tags are used, not the deprecated stages.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from medvit.errors import UserError
from medvit.tracking.runs import _HTTP_DEFAULTS, tracking_uri

CANDIDATE = "candidate"
CHAMPION = "champion"
PENDING = "pending"
AUROC_KEY = "test/auroc_macro"
# Version tags holding the test metrics: macro/micro summaries and their intervals.
_SUMMARY_METRICS = ("auroc_macro", "ap_macro", "auroc_micro", "ap_micro", "sens_at_spec_macro", "f1_macro",
                    "sensitivity_macro", "specificity_macro", "ece_macro", "n_labels_skipped", "n_samples", "n_groups")
# Per baseline: its macro AUROC and the paired difference (fine-tuned minus baseline) with its CI.
_BASELINE_METRICS = ("auroc_macro", "auroc_macro_ci_low", "auroc_macro_ci_high", "auroc_macro_diff",
                     "auroc_macro_diff_ci_low", "auroc_macro_diff_ci_high")


def registered_model_name(domain: str) -> str:
    """``medvit-medical`` or ``medvit-satellite``."""
    return f"medvit-{domain}"


# --------------------------------------------------------------------------- evaluation inputs
@dataclass(frozen=True)
class Evaluation:
    """What register needs from evaluate: test metrics of the model and of each baseline, and thresholds."""

    finetune: dict[str, float]
    baselines: dict[str, dict[str, float]]
    thresholds: list[float]  # (L,) in label_names order
    threshold_method: str


def _load_json(path: Path, stage: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the {stage} stage first (`dvc repro {stage}`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err}); re-run the {stage} stage") from None


def _need(mapping: Any, key: str, path: Path, where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise UserError(f"{path}: missing key {where}{key!r}; re-run the evaluate stage to rewrite it")
    return mapping[key]


def read_metrics(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Fine-tuned and per-baseline metrics from evaluate's metrics.json.

    Evaluate's layout: the fine-tuned model's metrics at the top level and each
    baseline nested under its name (``{"test/auroc_macro": ..., "clip_zeroshot":
    {"test/auroc_macro": ..., "test/auroc_macro_diff": ...}}``); also accepted:
    ``{"finetune": {...}, "baselines": {"<name>": {...}}}``. Evaluate drops
    undefined (NaN) values, so a missing ``test/auroc_macro`` inside a section that
    has other test metrics reads as undefined, which the gate refuses.

    Raises:
        UserError: the file holds no test metrics for the fine-tuned model, naming the file and key.
    """
    data = _load_json(path, "evaluate")
    if not isinstance(data, Mapping):
        raise UserError(f"{path}: expected a JSON object of metrics; re-run the evaluate stage")
    if isinstance(data.get("finetune"), Mapping):
        finetune = dict(data["finetune"])
        baselines = data.get("baselines", {})
        if not isinstance(baselines, Mapping):
            raise UserError(f"{path}: 'baselines' must map baseline names to their metrics")
    else:
        finetune = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
        baselines = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    if not any(str(k).startswith("test/") for k in finetune):
        raise UserError(f"{path}: missing key {AUROC_KEY!r} (no test metrics for the fine-tuned model); "
                        "re-run the evaluate stage to rewrite it")
    return finetune, {str(k): dict(v) for k, v in baselines.items()}


def read_thresholds(path: Path, label_names: Sequence[str]) -> tuple[list[float], str]:
    """Per-label thresholds (in ``label_names`` order) and the method from evaluate's thresholds.json.

    Accepts ``{"method": m, "thresholds": {label: t}}``, the same nested under
    ``"finetune"``, or ``{label: t}``; a value may also be ``{"threshold": t, ...}``.

    Raises:
        UserError: a label has no threshold, naming the file and label.
    """
    data = _load_json(path, "evaluate")
    if isinstance(data, Mapping) and isinstance(data.get("finetune"), Mapping):
        data = data["finetune"]
    method = str(data.get("method", "unknown")) if isinstance(data, Mapping) else "unknown"
    table = data.get("thresholds", data) if isinstance(data, Mapping) else data
    if isinstance(table, list) and isinstance(data, Mapping) and "label_names" in data:
        table = dict(zip(data["label_names"], table))
    out = []
    for name in label_names:
        value = _need(table, name, path, "thresholds.")
        if isinstance(value, Mapping):
            value = _need(value, "threshold", path, f"thresholds.{name}.")
        out.append(float(value))
    return out, method


def read_meta(model_dir: Path) -> dict[str, Any]:
    """models/<d>/meta.json, after checking that the weights beside it exist."""
    if not (model_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"{model_dir / 'model.safetensors'}: missing; run the finetune stage first")
    meta = _load_json(model_dir / "meta.json", "finetune")
    for key in ("model", "img_size", "in_chans", "label_names", "mean", "std", "weights"):
        _need(meta, key, model_dir / "meta.json", "")
    return dict(meta)


def read_evaluation(report_dir: Path, label_names: Sequence[str]) -> Evaluation:
    """metrics.json + thresholds.json of ``report_dir``."""
    finetune, baselines = read_metrics(report_dir / "metrics.json")
    thresholds, method = read_thresholds(report_dir / "thresholds.json", label_names)
    return Evaluation(finetune, baselines, thresholds, method)


# --------------------------------------------------------------------------- gate
@dataclass(frozen=True)
class Gate:
    """Outcome of the quality gate, with the numbers behind it."""

    passed: bool
    auroc: float
    auroc_ci: tuple[float | None, float | None]
    min_auroc: float
    min_margin: float
    best_baseline: str | None
    best_baseline_auroc: float | None
    margin: float | None
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs and tags."""
        return ("passed: " if self.passed else "refused: ") + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record (NaN becomes null)."""
        d = asdict(self)
        d["auroc"] = self.auroc if _finite(self.auroc) else None
        d["auroc_ci"] = [v if _finite(v) else None for v in self.auroc_ci]
        return d


def _finite(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def apply_gate(
    finetune: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]], min_auroc: float, min_margin: float
) -> Gate:
    """Test macro AUROC must reach ``min_auroc`` and beat the best baseline's by ``min_margin``.

    A NaN AUROC (every label single-class on test) refuses; a NaN baseline is ignored;
    with no usable baseline the margin cannot be checked, which refuses too.
    """
    auroc = float(finetune[AUROC_KEY]) if _finite(finetune.get(AUROC_KEY)) else float("nan")  # missing = undefined
    ci = (finetune.get(f"{AUROC_KEY}_ci_low"), finetune.get(f"{AUROC_KEY}_ci_high"))
    usable = {n: float(m[AUROC_KEY]) for n, m in baselines.items() if _finite(m.get(AUROC_KEY))}
    best = max(usable, key=usable.__getitem__) if usable else None
    best_auroc = usable[best] if best else None
    margin = auroc - best_auroc if best_auroc is not None and not math.isnan(auroc) else None
    reasons, passed = [], True
    ci_txt = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if _finite(ci[0]) and _finite(ci[1]) else ""
    if math.isnan(auroc):
        passed = False
        reasons.append("test macro AUROC is undefined (no label has both classes on test)")
    elif auroc < min_auroc:
        passed = False
        reasons.append(f"test macro AUROC {auroc:.3f}{ci_txt} is below min_auroc {min_auroc:.3f}")
    else:
        reasons.append(f"test macro AUROC {auroc:.3f}{ci_txt} >= min_auroc {min_auroc:.3f}")
    if best is None:
        passed = False
        reasons.append("no baseline with a defined test macro AUROC: the min_margin check cannot be made")
    elif margin is not None:
        verdict = ">=" if margin >= min_margin else "is below"
        passed = passed and margin >= min_margin
        reasons.append(
            f"margin over the best baseline {best} ({best_auroc:.3f}) is {margin:+.3f}, {verdict} min_margin "
            f"{min_margin:+.3f}"
        )
    return Gate(passed, auroc, ci, min_auroc, min_margin, best, best_auroc, margin, reasons)


# --------------------------------------------------------------------------- fingerprints and tags
def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def thresholds_sha256(label_names: Sequence[str], thresholds: Sequence[float]) -> str:
    """Hex sha256 of the canonical JSON of the per-label thresholds."""
    blob = json.dumps({"label_names": list(label_names), "thresholds": [float(t) for t in thresholds]},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def metric_tags(finetune: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Version tags for the test summary metrics with CIs, and each baseline's macro AUROC."""
    tags: dict[str, str] = {}
    for m in _SUMMARY_METRICS:
        for suffix in ("", "_ci_low", "_ci_high"):
            key = f"test/{m}{suffix}"
            if _finite(finetune.get(key)):
                tags[key] = f"{float(finetune[key]):.6g}"
    for name, metrics in baselines.items():
        for m in _BASELINE_METRICS:
            if _finite(metrics.get(f"test/{m}")):
                tags[f"baseline/{name}/test/{m}"] = f"{float(metrics[f'test/{m}']):.6g}"
    return tags


def version_tags(
    meta: Mapping[str, Any],
    ev: Evaluation,
    gate: Gate,
    weights_sha: str,
    thresholds_sha: str,
    git_commit: str,
    run_id: str | None,
    onnx_opset: int | None,
    onnx_diff: float | None,
) -> dict[str, str]:
    """The tags of a new version: review state, lineage, weights provenance, gate outcome, test metrics."""
    from medvit.tracking.card import is_random_init

    tags = {
        "review_status": PENDING,
        "gate": "passed" if gate.passed else "refused",
        "gate_reason": gate.summary(),
        "weights": str(meta.get("weights", "unknown")),
        "weights_random_init": str(is_random_init(str(meta.get("weights", "")))).lower(),
        "weights_sha256": weights_sha,
        "thresholds_sha256": thresholds_sha,
        "threshold_method": ev.threshold_method,
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
    tags.update(metric_tags(ev.finetune, ev.baselines))
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

    for key, value in _HTTP_DEFAULTS.items():  # bounded time-outs: a down server fails fast
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

    return [f"{dist}=={version(dist).split('+')[0]}" for dist in ("torch", "timm", "safetensors", "numpy", "pandas")]


def log_servable_model(
    model_dir: Path,
    label_names: Sequence[str],
    thresholds: Sequence[float],
    threshold_method: str,
    onnx_path: Path | None = None,
) -> Any:
    """Log the pyfunc (from code, safetensors artifacts) to the active MLflow run; returns its ModelInfo.

    The signature is one unnamed float32 (-1, C, -1, -1) tensor (unnamed, so
    ``predict`` receives an array, not a dict): any batch and any spatial
    size (the model resizes to img_size like evaluation); the input example is a
    seeded uniform random batch at img_size, never patient pixels.
    """
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    from medvit.tracking import pyfunc

    meta = json.loads((model_dir / "meta.json").read_text())
    channels, size = int(meta["in_chans"]), int(meta["img_size"])
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, channels, -1, -1))]),
        outputs=Schema([ColSpec("double", pyfunc.SCORE_PREFIX + n) for n in label_names]
                       + [ColSpec("long", pyfunc.LABEL_PREFIX + n) for n in label_names]),
    )
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
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=pyfunc.__file__,
            artifacts=artifacts,
            code_paths=[str(code)],
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
        )


def register_version(
    mlflow_client: Any,
    name: str,
    model_info: Any,
    run_id: str,
    tags: Mapping[str, str],
    card: str,
) -> Any:
    """Create the registered model if needed, then a version with ``tags`` and the card; alias ``candidate``."""
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
        name, source=model_info.model_uri, run_id=run_id, tags=dict(tags), description=card,
        model_id=getattr(model_info, "model_id", None),
    )
    mlflow_client.set_registered_model_alias(name, CANDIDATE, version.version)
    return mlflow_client.get_model_version(name, version.version)
