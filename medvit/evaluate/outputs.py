"""Read what evaluate (and finetune) wrote, in exactly the layout they write it.

The register stage and the model card read the evaluation through here:

- ``reports/<d>/metrics.json``: the fine-tuned model's metrics at the top level
  (``{"test/auroc_macro": 0.91, ...}``) and each baseline's metrics under its
  name (``{"clip_zeroshot": {"test/auroc_macro": 0.62, "test/auroc_macro_diff": ...}}``);
  undefined (NaN) values are left out by evaluate;
- ``reports/<d>/thresholds.json``: ``{"method": m, "thresholds": {label: t}, ...}``;
- ``models/<d>/meta.json`` beside ``model.safetensors``.

Any other layout is an error naming the file and the fix (re-run the stage that
writes it); there are no alternative layouts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from medvit.errors import UserError
from medvit.evaluate.gate import AUROC_KEY

META_KEYS = ("model", "img_size", "in_chans", "label_names", "mean", "std", "weights")


@dataclass(frozen=True)
class EvaluateOutputs:
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


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _layout_error(path: Path, what: str, stage: str = "evaluate") -> UserError:
    return UserError(f"{path}: {what}, which is not the layout the {stage} stage writes; "
                     f"re-run the {stage} stage (`dvc repro {stage}`) to rewrite it")


def read_metrics(path: Path) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Fine-tuned and per-baseline metrics from evaluate's metrics.json.

    Raises:
        UserError: naming the file, when it is not evaluate's layout (a value that is
            neither a number nor a baseline's object of numbers) or holds no test
            metrics for the fine-tuned model.
    """
    data = _load_json(path, "evaluate")
    if not isinstance(data, Mapping):
        raise _layout_error(path, f"expected a JSON object of metrics, found {type(data).__name__}")
    finetune: dict[str, float] = {}
    baselines: dict[str, dict[str, float]] = {}
    for key, value in data.items():
        if _is_number(value):
            finetune[key] = float(value)
        elif isinstance(value, Mapping) and all(_is_number(v) for v in value.values()):
            baselines[key] = {k: float(v) for k, v in value.items()}
        else:
            raise _layout_error(path, f"key {key!r} holds {json.dumps(value)[:80]}, neither a number nor a "
                                      "baseline's metrics")
    if not any(k.startswith("test/") for k in finetune):
        raise UserError(f"{path}: missing key {AUROC_KEY!r} (no test metrics for the fine-tuned model); "
                        "re-run the evaluate stage to rewrite it")
    return finetune, baselines


def read_thresholds(path: Path, label_names: Sequence[str]) -> tuple[list[float], str]:
    """Per-label thresholds (in ``label_names`` order) and their method from evaluate's thresholds.json.

    Raises:
        UserError: naming the file, when ``method`` or ``thresholds`` is missing or malformed,
            or a label has no numeric threshold.
    """
    data = _load_json(path, "evaluate")
    if not isinstance(data, Mapping) or not isinstance(data.get("thresholds"), Mapping):
        raise _layout_error(path, "no 'thresholds' object of label -> threshold")
    if not isinstance(data.get("method"), str):
        raise _layout_error(path, "no 'method' naming how the thresholds were chosen")
    table = data["thresholds"]
    out = []
    for name in label_names:
        if name not in table:
            raise UserError(f"{path}: missing key thresholds.{name!r}; re-run the evaluate stage to rewrite it")
        if not _is_number(table[name]):
            raise _layout_error(path, f"thresholds.{name!r} is {json.dumps(table[name])[:40]}, not a number")
        out.append(float(table[name]))
    return out, data["method"]


def read_meta(model_dir: Path) -> dict[str, Any]:
    """models/<d>/meta.json, after checking that the weights beside it exist.

    Raises:
        FileNotFoundError: the weights or meta.json are missing.
        UserError: meta.json lacks a key the register stage needs, naming file and key.
    """
    if not (model_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"{model_dir / 'model.safetensors'}: missing; run the finetune stage first")
    path = model_dir / "meta.json"
    meta = _load_json(path, "finetune")
    if not isinstance(meta, Mapping):
        raise _layout_error(path, f"expected a JSON object, found {type(meta).__name__}", "finetune")
    for key in META_KEYS:
        if key not in meta:
            raise UserError(f"{path}: missing key {key!r}; re-run the finetune stage to rewrite it")
    return dict(meta)


def read_outputs(report_dir: Path, label_names: Sequence[str]) -> EvaluateOutputs:
    """metrics.json + thresholds.json of ``report_dir``."""
    finetune, baselines = read_metrics(report_dir / "metrics.json")
    thresholds, method = read_thresholds(report_dir / "thresholds.json", label_names)
    return EvaluateOutputs(finetune, baselines, thresholds, method)
