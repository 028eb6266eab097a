"""Data description: demographics and label prevalence per split (TRIPOD+AI item 20, CLAIM 21).

``demographics.csv``: ``split, attribute, value, count, fraction``, one row per value of
each subgroup attribute (``subgroups.attribute_values``: the manifest columns of
``evaluate.subgroups.<domain>``) in each split; a split's counts of one attribute sum to
its size and its fractions to 1. ``label_prevalence.csv``: ``split, label, n, n_known,
positives, prevalence`` (prevalence among the known targets). Only counts of
categorical, de-identified manifest columns are written: no ids, no free text.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from medvit.data.manifest import SPLITS, Manifest
from medvit.evaluate.subgroups import attribute_values

DEMOGRAPHICS_COLUMNS = ("split", "attribute", "value", "count", "fraction")
PREVALENCE_COLUMNS = ("split", "label", "n", "n_known", "positives", "prevalence")


def demographics(manifest: Manifest, attributes: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Counts and fractions per attribute value per split, and the attributes the manifest lacks."""
    rows = []
    missing: list[str] = []
    for split in SPLITS:
        frame = manifest.split(split)
        values, missing = attribute_values(frame, attributes)
        for attribute, v in values.items():
            uniq, counts = np.unique(v, return_counts=True)
            for value, count in zip(uniq.tolist(), counts.tolist()):
                rows.append({"split": split, "attribute": attribute, "value": value, "count": int(count),
                             "fraction": count / len(frame)})
    return pd.DataFrame(rows, columns=list(DEMOGRAPHICS_COLUMNS)), missing


def label_prevalence(manifest: Manifest) -> pd.DataFrame:
    """Per split and label: images, known targets, positives and prevalence among the known."""
    rows = []
    for split in SPLITS:
        y = manifest.labels(split)
        known = np.isfinite(y)
        for j, name in enumerate(manifest.label_names):
            n_known = int(known[:, j].sum())
            positives = int(np.nansum(y[:, j]))
            rows.append({"split": split, "label": name, "n": len(y), "n_known": n_known, "positives": positives,
                         "prevalence": positives / n_known if n_known else math.nan})
    return pd.DataFrame(rows, columns=list(PREVALENCE_COLUMNS))


def description_json(demo: pd.DataFrame, prev: pd.DataFrame, missing: Sequence[str]) -> dict[str, Any]:
    """``data_description.json``: both tables as records (NaN as null) and the attributes not in the manifest."""
    def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return json.loads(frame.to_json(orient="records"))  # plain JSON types, NaN as null

    return {"demographics": records(demo), "prevalence": records(prev), "attributes_missing": list(missing)}
