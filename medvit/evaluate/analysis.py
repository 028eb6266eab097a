"""The review material beyond the headline metrics, written by the evaluate stage in one call.

``write_analysis`` writes to ``reports/<d>/`` (names in the package docstring):
``intervals.json``, ``subgroups.csv`` + ``figures/subgroups_forest.png``,
``failures/`` (table and overlays), ``demographics.csv``, ``label_prevalence.csv`` and
``data_description.json``, and returns the figures and the report notes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medvit.config import EvaluateConfig
from medvit.data.manifest import Manifest
from medvit.evaluate import describe, failures, plots, subgroups
from medvit.evaluate.figures import attention_candidates
from medvit.evaluate.inputs import FINETUNE
from medvit.evaluate.report import Evaluation
from medvit.io.atomic import write_json_atomic

log = logging.getLogger(__name__)

FOREST_PNG = "subgroups_forest.png"


@dataclass
class Analysis:
    """What ``write_analysis`` drew and what the comparison report should say about it."""

    forest: Path
    failure_pngs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # merged into metrics.json


def write_analysis(
    ev: Evaluation,
    manifest: Manifest,
    test_scores: dict[str, np.ndarray],
    cache_dir: Path,
    model_dir: Path,
    out: Path,
    cfg: EvaluateConfig,
    attributes: tuple[str, ...],
    min_auroc: float,
    burned_in_possible: bool = False,
) -> Analysis:
    """Write the interval record, subgroup table and forest plot, failure cases and data description.

    Args:
        attributes: subgroup columns of this domain (``evaluate.subgroups.<d>``).
        min_auroc: the gate's ``register.min_auroc``; subgroups below it are flagged.
        burned_in_possible: see ``figures.attention_candidates``.
    """
    write_json_atomic(out / "intervals.json", ev.reliability.to_dict())
    test = manifest.split("test")
    groups = test["group"].astype(str).to_numpy()
    y = manifest.labels("test")
    values, missing = subgroups.attribute_values(test, attributes)
    table = subgroups.subgroup_table(
        y, test_scores, ev.thresholds, groups, values, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed,
        ci_level=cfg.ci_level, min_groups=cfg.min_groups, min_auroc=min_auroc, fixed_specificity=cfg.fixed_specificity)
    table.to_csv(out / "subgroups.csv", index=False, float_format="%.6g")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    forest = plots.save_forest(table, out / "figures" / FOREST_PNG, min_auroc)
    notes = []
    if missing:
        notes.append(f"Subgroup attributes not in this manifest, skipped: {', '.join(missing)}.")
    few = table.loc[table["interval"] != "ok", "subgroup"].nunique()
    flagged = subgroups.flagged_summary(table)
    notes.append(f"Subgroups (subgroups.csv): {table['subgroup'].nunique()} subgroup(s), {few} with too few groups "
                 f"for an interval (< evaluate.min_groups {cfg.min_groups}); {len(flagged)} flagged row(s)"
                 + (": " + "; ".join(flagged[:10]) + (" ..." if len(flagged) > 10 else "") if flagged else "."))

    cases = failures.select_failures(y, test_scores[FINETUNE], ev.thresholds[FINETUNE], manifest.label_names,
                                     test["id"].astype(str).tolist(), groups, cfg.n_failure_cases)
    drawable = attention_candidates(manifest, burned_in_possible)
    pngs = failures.write_failures(cache_dir, manifest, model_dir, cases, out, drawable)

    demo, missing_demo = describe.demographics(manifest, attributes)
    prev = describe.label_prevalence(manifest)
    demo.to_csv(out / "demographics.csv", index=False, float_format="%.6g")
    prev.to_csv(out / "label_prevalence.csv", index=False, float_format="%.6g")
    write_json_atomic(out / "data_description.json", describe.description_json(demo, prev, missing_demo))
    log.info("subgroups: %d rows, %d flagged; failure cases: %d (%d overlays)", len(table), len(flagged),
             len(cases), len(pngs))
    ft = table[table["model"] == FINETUNE]
    counts = {"test/subgroups": float(len(ft)), "test/subgroups_flagged": float(ft["flagged"].sum()),
              "test/subgroups_without_interval": float((ft["interval"] != "ok").sum())}
    return Analysis(forest, pngs, notes, counts)
