"""Lineage of an evaluation: MLflow tags and the provenance lines printed in the comparison report.

The evaluate run is linked to its finetune and zeroshot runs by their pipeline
ids and run ids (read from their meta.json). Mismatched lineage (outputs older
than the current data or than the params their stage declares) does not stop the
stage, but is written into the report and the tags, so a reviewer sees it.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from medvit.evaluate.report import Evaluation
from medvit.weights import is_random_init

log = logging.getLogger(__name__)


def _weights_note(who: str, weights: str) -> str:
    if is_random_init(weights):
        return f"{who} weights: {weights or 'unknown'} -- NOT PRETRAINED (random initialisation, demo only)."
    return f"{who} weights: {weights}."


def lineage(
    finetune_meta: Mapping[str, Any],
    baselines_meta: Mapping[str, Any],
    data_hash: str,
    expected: Mapping[str, str],
    pipeline_id: str,
    params_hash: str,
    ev: Evaluation,
) -> tuple[dict[str, str], list[str]]:
    """MLflow tags and report notes for one evaluation.

    Args:
        finetune_meta: ``models/<d>/meta.json``.
        baselines_meta: ``baselines/<d>/meta.json``.
        data_hash: digest of the manifest evaluated.
        expected: per upstream stage (``finetune``, ``zeroshot``), the pipeline id its
            declared params and data give now; a recorded id that differs means stale outputs.
        pipeline_id: this evaluation's own id.
        params_hash: hash of the params evaluate declares.
        ev: the evaluation (for skipped labels and model names).
    """
    weights = str(finetune_meta.get("weights", "unknown"))
    metas = {"finetune": ("models", "the fine-tuned model", finetune_meta),
             "zeroshot": ("baselines", "the baselines", baselines_meta)}
    tags = {
        "pipeline_id": pipeline_id, "data_hash": data_hash, "params_hash": params_hash, "weights": weights,
        **{f"{s}_pipeline_id": str(meta.get("pipeline_id") or "") for s, (_, _, meta) in metas.items()},
        "finetune_run_id": str(finetune_meta.get("run_id") or ""),
        "zeroshot_run_id": str(baselines_meta.get("run_id") or ""),
        "baselines": ",".join(ev.models[1:]),
        "labels_skipped": ",".join(ev.skipped_test) or "none",
        "n_labels_skipped": str(len(ev.skipped_test)),
        "threshold_method": str(ev.settings["threshold_method"]),
    }
    notes = [_weights_note("Fine-tuned model", weights)]
    for b in ev.models[1:]:
        w = str((baselines_meta.get("baselines") or {}).get(b, {}).get("weights", "unknown"))
        tags[f"weights.{b}"] = w
        notes.append(_weights_note(f"Baseline {b}", w))
    warnings = []
    for stage, (folder, what, meta) in metas.items():
        recorded = meta.get("pipeline_id")
        if recorded and str(recorded) != expected[stage]:
            warnings.append(f"WARNING: {folder}/meta.json pipeline id {recorded} is not the one {stage}'s declared "
                            f"params and data give now ({expected[stage]}); {what} may be stale, re-run `dvc repro`.")
        recorded_data = meta.get("data_hash")
        if recorded_data and str(recorded_data) != data_hash:
            warnings.append(f"WARNING: {what} scored manifest {recorded_data}, this report evaluates {data_hash}.")
    for w in warnings:
        log.warning(w.removeprefix("WARNING: "))
    tags["lineage_warnings"] = str(len(warnings))
    return tags, notes + warnings
