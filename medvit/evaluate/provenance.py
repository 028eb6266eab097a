"""Lineage of an evaluation: MLflow tags and the provenance lines printed in the comparison report.

The evaluate run is linked to its finetune and zeroshot runs by the pipeline id
read from ``models/<d>/meta.json`` (and tagged with their run ids). Mismatched
lineage (baselines from another pipeline run, outputs older than the current data
or params) does not stop the stage, but is written into the report and the tags,
so a reviewer sees it.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from medvit.evaluate.report import Evaluation

log = logging.getLogger(__name__)

RANDOM_INIT = "random-init"


def _weights_note(who: str, weights: str) -> str:
    if weights in (RANDOM_INIT, "none", ""):
        return f"{who} weights: {weights or 'unknown'} -- NOT PRETRAINED (random initialisation, demo only)."
    return f"{who} weights: {weights}."


def lineage(
    finetune_meta: Mapping[str, Any],
    baselines_meta: Mapping[str, Any],
    data_hash: str,
    expected_pipeline_id: str,
    params_hash: str,
    ev: Evaluation,
) -> tuple[dict[str, str], list[str]]:
    """MLflow tags and report notes for one evaluation.

    Args:
        finetune_meta: ``models/<d>/meta.json``.
        baselines_meta: ``baselines/<d>/meta.json``.
        data_hash: digest of the manifest evaluated.
        expected_pipeline_id: the id the current data and training params give.
        params_hash: hash of the params sections this report depends on.
        ev: the evaluation (for skipped labels and model names).
    """
    pid = str(finetune_meta.get("pipeline_id") or expected_pipeline_id)
    weights = str(finetune_meta.get("weights", "unknown"))
    tags = {
        "pipeline_id": pid, "data_hash": data_hash, "params_hash": params_hash, "weights": weights,
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
    bl_pid = baselines_meta.get("pipeline_id")
    if bl_pid and str(bl_pid) != pid:
        warnings.append(f"WARNING: the baselines come from pipeline {bl_pid}, the fine-tuned model from {pid}; "
                        "re-run `dvc repro` so both score the same data.")
    if pid != expected_pipeline_id:
        warnings.append(f"WARNING: models/meta.json pipeline id {pid} is not that of the current data and params "
                        f"({expected_pipeline_id}); the model may be stale, re-run `dvc repro`.")
    ft_hash = finetune_meta.get("data_hash")
    if ft_hash and str(ft_hash) != data_hash:
        warnings.append(f"WARNING: the model was trained on manifest {ft_hash}, evaluated on {data_hash}.")
    for w in warnings:
        log.warning(w.removeprefix("WARNING: "))
    tags["lineage_warnings"] = str(len(warnings))
    return tags, notes + warnings
