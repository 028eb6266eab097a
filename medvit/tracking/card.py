"""The model card: Markdown for a registered model version's description.

Structure after Mitchell et al. 2019, "Model Cards for Model Reporting" (intended
use, data, metrics with uncertainty, limitations), plus the lineage a reviewer needs
(weights provenance, commit, pipeline id) and the gate outcome. Pure string
building: the register stage passes everything in, nothing is read here.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from medvit.evaluate.intervals import Reliability
from medvit.metrics import METRICS, metric_key, summary_names
from medvit.weights import is_random_init

NOT_APPROVED = "NOT FOR CLINICAL USE UNTIL APPROVED"

_INTENDED_USE = {
    "medical": (
        "Multi-label triage research on chest radiographs and CT slices: the model scores each finding and "
        "flags those above the operating threshold chosen on the validation split. It is a decision-support "
        "research artefact for ML engineers and clinical reviewers of the imaging group, not a diagnostic device."
    ),
    "satellite": (
        "Multi-label land-cover tagging of Sentinel-2 / Landsat tiles: the model scores each class present in a "
        "tile and flags those above the operating threshold chosen on the validation split. It supports analysts "
        "of the remote-sensing team; it is not a substitute for ground truth or for operational decisions."
    ),
}


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):+.3f}" if signed else f"{float(value):.3f}"


def _count(value: Any) -> str:
    return "n/a" if value is None else str(int(value))


def _unknown_note(metrics: Mapping[str, Any]) -> list[str]:
    """The limitation line for masked (unknown) test labels, when there were any."""
    n = metrics.get("test/n_unknown")
    if not n:
        return []
    return [f"- {int(n)} test label(s) were unknown (uncertain or blank, ignored by `ingest.medical.uncertain` / "
            "`blank`) and masked: each label's metrics use its known test rows only (column 'known test "
            "labels'), so a label with few known rows has a wide interval."]


def _interval_note(metrics: Mapping[str, Any]) -> list[str]:
    """The warning for test CIs from fewer than ``evaluate.min_groups`` groups (issue #14), when so."""
    n, least = metrics.get("test/n_groups"), metrics.get("min_groups")
    if n is None or least is None or Reliability(int(n), int(least)).reliable:
        return []
    return [f"- **{Reliability(int(n), int(least)).note()}**"]


def _with_ci(metrics: Mapping[str, Any], key: str, signed: bool = False) -> str:
    """``0.912 [0.871, 0.944]`` from ``key``, ``key_ci_low``, ``key_ci_high`` (CI omitted when absent).

    A missing point estimate reads ``n/a``: evaluate drops undefined (NaN) values.
    """
    point = _fmt(metrics.get(key), signed)
    lo, hi = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    if lo is None or hi is None:
        return point
    return f"{point} [{_fmt(lo, signed)}, {_fmt(hi, signed)}]"


def _metrics_table(finetune: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]]) -> list[str]:
    keys = [f"test/{s}" for s in summary_names(tuple(m for m in METRICS if m.headline))]
    lines = [
        "| model | " + " | ".join(k.removeprefix("test/") for k in keys) + " |",
        "|---|" + "---|" * len(keys),
        "| **fine-tuned** | " + " | ".join(_with_ci(finetune, k) for k in keys) + " |",
    ]
    for name, m in baselines.items():
        lines.append(f"| {name} | " + " | ".join(_with_ci(m, k) for k in keys) + " |")
    return lines


def _p_value(p: float, n_resamples: Any) -> str:
    """A bootstrap p-value; 0 means below the resolution 1/B of B resamples."""
    if p == 0 and n_resamples:
        return f", p < {1 / float(n_resamples):.2g}"
    return f", p = {p:.3g}"


def _differences(baselines: Mapping[str, Mapping[str, Any]], n_resamples: Any) -> list[str]:
    """Paired-bootstrap differences (fine-tuned minus baseline), when evaluate reported them."""
    out = []
    for name, m in baselines.items():
        for key in (f"test/{m.name}_macro_diff" for m in METRICS if m.paired):
            if key in m:
                p = _p_value(float(m[f"{key}_p"]), n_resamples) if f"{key}_p" in m else ""
                out.append(f"- {key.removeprefix('test/').removesuffix('_diff')} vs {name}: "
                           f"{_with_ci(m, key, signed=True)}{p}")
    return out


def render_card(
    *,
    registered_model: str,
    domain: str,
    meta: Mapping[str, Any],
    finetune_metrics: Mapping[str, Any],
    baseline_metrics: Mapping[str, Mapping[str, Any]],
    thresholds: Sequence[float],
    threshold_method: str,
    gate: Mapping[str, Any],
    weights_sha256: str,
    git_commit: str,
    onnx_opset: int | None,
) -> str:
    """The Markdown model card of one registered version.

    Args:
        registered_model: e.g. ``medvit-medical``.
        domain: ``medical`` or ``satellite``.
        meta: models/<d>/meta.json.
        finetune_metrics: the fine-tuned model's ``test/...`` metrics (with ``_ci_low``/``_ci_high``).
        baseline_metrics: per baseline, the same keys.
        thresholds: (L,) operating thresholds chosen on val, in ``meta["label_names"]`` order.
        threshold_method: how they were chosen (youden | f1 | sensitivity).
        gate: the quality gate record (``passed``, ``reasons``, criteria).
        weights_sha256: sha256 of model.safetensors.
        git_commit: the code version.
        onnx_opset: opset of the ONNX export logged with the version (None: no export).
    """
    weights = str(meta.get("weights", "unknown"))
    labels = list(meta["label_names"])
    lines = [
        f"# {registered_model}: model card",
        "",
        f"> **{NOT_APPROVED}.** This version is a *candidate*: it is for review only until a named reviewer "
        "approves it with `medvit review approve` (which moves the `champion` alias).",
        "",
    ]
    if is_random_init(weights):
        lines += [
            "> **WARNING: RANDOM-INIT WEIGHTS.** The backbone was NOT initialised from pretrained weights "
            "(`finetune.weights: none`). This is a pipeline demo, not a usable model, and it cannot be approved.",
            "",
        ]
    lines += ["## Intended use", "", _INTENDED_USE.get(domain, "Multi-label image classification."), "",
              "Out of scope: any use on data unlike the training data (other sites, scanners, sensors or "
              "label definitions) without a new evaluation, and any automated decision without human review.", ""]

    lines += [
        "## Model and weights provenance",
        "",
        f"- architecture: `{meta.get('model')}` (timm), input {meta.get('in_chans')} x {meta.get('img_size')} x "
        f"{meta.get('img_size')}, first {meta.get('freeze_blocks', 0)} blocks frozen, multi-label head",
        f"- initial weights: **{weights}**",
        f"- fine-tuned weights sha256: `{weights_sha256}`",
        f"- code: git `{git_commit}`; pipeline id `{meta.get('pipeline_id', 'n/a')}`; "
        f"finetune run `{meta.get('run_id', 'n/a')}`",
        f"- ONNX export: {'opset ' + str(onnx_opset) + ', dynamic batch' if onnx_opset else 'not exported'}",
        "",
        "## Data",
        "",
        f"- labels ({len(labels)}): " + ", ".join(f"`{n}`" for n in labels),
        f"- data (manifest) hash: `{meta.get('data_hash', 'n/a')}`; params hash: `{meta.get('params_hash', 'n/a')}`",
        "- splits are group-aware (no patient or scene in two splits); normalisation statistics come from the "
        "train split only",
        f"- input: float32 (N, {meta.get('in_chans')}, H, W) scaled like the ingest cache; the model resizes to "
        f"{meta.get('img_size')} and normalises with mean {list(meta.get('mean', []))}, "
        f"std {list(meta.get('std', []))}",
        "",
        "## Test metrics against the baselines",
        "",
        "Point estimate [95% CI]; intervals come from a bootstrap that resamples groups (patients or scenes).",
        "",
        *_interval_note(finetune_metrics),
        *_metrics_table(finetune_metrics, baseline_metrics),
        "",
    ]
    diffs = _differences(baseline_metrics, finetune_metrics.get("n_bootstrap"))
    if diffs:
        lines += ["Paired differences (fine-tuned minus baseline):", "", *diffs, ""]
    lines += [
        f"## Operating thresholds (chosen on val, method `{threshold_method}`)",
        "",
        "| label | threshold | known test labels |",
        "|---|---|---|",
        *[f"| {n} | {t:.4f} | {_count(finetune_metrics.get(f'test/{metric_key(n)}/n_known'))} |"
          for n, t in zip(labels, thresholds)],
        "",
        "## Quality gate",
        "",
        f"- outcome: **{'passed' if gate.get('passed') else 'REFUSED'}**",
        f"- criteria: test macro AUROC >= {gate.get('min_auroc')}, and at least {gate.get('min_margin')} above "
        f"the best baseline ({gate.get('best_baseline') or 'none'}: {_fmt(gate.get('best_baseline_auroc'))})",
        *[f"- {r}" for r in gate.get("reasons", [])],
        "",
        "## Limitations",
        "",
        "- Evaluated retrospectively on one held-out split of the same source as the training data; "
        "performance on other sites, devices or sensors is unknown.",
        "- Thresholds were tuned on a small validation split; sensitivity and specificity at deployment will differ.",
        "- Labels may be noisy (report-mined or area-fraction labels); rare labels have wide intervals.",
        *_unknown_note(finetune_metrics),
        *_interval_note(finetune_metrics),
        "- Scores are not calibrated probabilities unless the reliability diagrams in the evaluation report say so.",
    ]
    if is_random_init(weights):
        lines.append("- The backbone was trained from random initialisation: expect poor generalisation.")
    lines += [
        "",
        "## How to use",
        "",
        "```",
        f"mlflow models serve -m models:/{registered_model}@champion --env-manager local",
        "```",
        "",
        "(with the embedded store, first `export MLFLOW_TRACKING_URI=sqlite:///.mlflow/mlflow.db` in the repo root)",
        "",
        'POST `/invocations` with `{"inputs": <float32 array (N, C, H, W)>}`; the answer has, per image, '
        "`score:<label>` and `label:<label>` (1 when score >= threshold).",
        "",
    ]
    return "\n".join(lines)
