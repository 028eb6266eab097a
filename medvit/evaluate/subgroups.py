"""Performance per subgroup (sex, age band, view, manufacturer, site; scene, region, month, nodata).

For every configured attribute (``evaluate.subgroups.<domain>``, manifest columns) and
each of its values, every model is scored on the test rows of that subgroup:

- ``n``, ``groups`` (distinct patients/scenes) and ``prevalence`` (mean over labels of
  the positive fraction among known targets);
- ``auroc``, ``ap``, and ``sensitivity`` / ``specificity`` at the model's val-chosen
  thresholds, macro over the labels with both classes among the known rows of the
  subgroup *and* of the rest of test (``n_labels``), so the subgroup and its paired
  difference use the same labels;
- ``auroc_diff``: subgroup minus the rest of test.

CIs come from one group bootstrap of the whole test split (``bootstrap.group_weights``,
the same resamples as the headline metrics): each resample's weights restricted to the
subgroup and to the rest, so the difference is paired, also when one patient has images
in two subgroups. A subgroup (or its rest) with fewer than ``evaluate.min_groups`` groups
gets no CI: ``interval`` says ``too few groups for an interval (G groups)``.

A row is flagged when its ``auroc_diff`` CI excludes 0, or when its AUROC is below
``register.min_auroc`` (the gate), in which case a subgroup without an interval is
flagged on its point estimate.

Derived attributes: ``nodata_fraction`` is bucketed (``NODATA_BUCKETS``), ``season`` is
the meteorological season of ``month`` (``DJF``, ``MAM``, ``JJA``, ``SON``; hemisphere
not applied). Missing values are the subgroup ``unknown``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from medvit.data.layout import UNKNOWN
from medvit.evaluate.bootstrap import group_weights, percentile_ci
from medvit.evaluate.intervals import interval_status
from medvit.metrics import label_ranking_metrics, prevalence, threshold_metrics, valid_labels

ROW_METRICS: tuple[str, ...] = ("auroc", "ap", "sensitivity", "specificity")
NODATA_BUCKETS: tuple[tuple[float, str], ...] = ((0.0, "0"), (0.1, "0-0.1"), (0.25, "0.1-0.25"), (1.0, ">0.25"))
SEASONS = {12: "DJF", 1: "DJF", 2: "DJF", 3: "MAM", 4: "MAM", 5: "MAM", 6: "JJA", 7: "JJA", 8: "JJA",
           9: "SON", 10: "SON", 11: "SON"}
COLUMNS: tuple[str, ...] = (
    "model", "attribute", "value", "subgroup", "n", "groups", "prevalence", "n_labels",
    *(f"{m}{s}" for m in ROW_METRICS for s in ("", "_ci_low", "_ci_high")),
    "auroc_rest", "auroc_diff", "auroc_diff_ci_low", "auroc_diff_ci_high", "interval", "flagged", "flag_reason")


def _clean(values: pd.Series) -> np.ndarray:
    text = values.astype(str).str.strip()
    return np.where(values.isna() | text.isin({"", "nan", "None"}), UNKNOWN, text).astype(str)


def _nodata_bucket(v: object) -> str:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return UNKNOWN
    if math.isnan(f):
        return UNKNOWN
    return next((name for edge, name in NODATA_BUCKETS if f <= edge), NODATA_BUCKETS[-1][1])


def _season(v: object) -> str:
    try:
        return SEASONS.get(int(float(v)), UNKNOWN)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return UNKNOWN


def attribute_values(frame: pd.DataFrame, attributes: Sequence[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """attribute -> (N,) subgroup value per row, and the attributes this manifest does not have.

    ``season`` is derived from ``month`` and ``nodata_fraction`` is bucketed; every other
    attribute is the manifest column as text, ``unknown`` where empty.
    """
    out: dict[str, np.ndarray] = {}
    missing = []
    for a in attributes:
        if a == "season" and "season" not in frame and "month" in frame:
            out[a] = np.array([_season(v) for v in frame["month"]], dtype=str)
        elif a not in frame:
            missing.append(a)
        elif a == "nodata_fraction":
            out[a] = np.array([_nodata_bucket(v) for v in frame[a]], dtype=str)
        else:
            out[a] = _clean(frame[a])
    return out, missing


def _macro(per: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(B,) mean over ``labels`` of (B, L), ignoring NaN (a resample that lost a class)."""
    if not labels.any():
        return np.full(per.shape[0], np.nan)
    sub = per[:, labels]
    with np.errstate(invalid="ignore"):
        count = np.isfinite(sub).sum(axis=1)
        return np.where(count > 0, np.nansum(sub, axis=1) / np.maximum(count, 1), np.nan)


def _scores(y: np.ndarray, s: np.ndarray, thr: np.ndarray, w: np.ndarray, labels: np.ndarray,
            fixed_specificity: float) -> dict[str, np.ndarray]:
    """metric -> (B,) macro over ``labels`` under the (B, n) weights ``w``."""
    ranking = label_ranking_metrics(y, s, w, fixed_specificity)
    called = threshold_metrics(y, s, thr, w)
    per = {"auroc": ranking["auroc"], "ap": ranking["ap"], "sensitivity": called["sensitivity"],
           "specificity": called["specificity"]}
    return {k: _macro(v, labels) for k, v in per.items()}


def _flag(auroc: float, diff: tuple[float, float, float], interval: str, min_auroc: float) -> str:
    reasons = []
    lo, hi = diff[1], diff[2]
    if interval == "ok" and math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0):
        side = "lower" if hi < 0 else "higher"
        reasons.append(f"AUROC {side} than the rest of test ({diff[0]:+.3f} [{lo:+.3f}, {hi:+.3f}])")
    if math.isfinite(auroc) and auroc < min_auroc:
        reasons.append(f"AUROC {auroc:.3f} below register.min_auroc {min_auroc:.3f}")
    return "; ".join(reasons)


def subgroup_table(
    y_true: np.ndarray,
    scores: Mapping[str, np.ndarray],
    thresholds: Mapping[str, np.ndarray],
    groups: Sequence[str],
    attributes: Mapping[str, np.ndarray],
    *,
    n_bootstrap: int,
    seed: int,
    ci_level: float,
    min_groups: int,
    min_auroc: float,
    fixed_specificity: float = 0.9,
) -> pd.DataFrame:
    """``subgroups.csv``: one row per (model, attribute, value), columns ``COLUMNS``.

    Args:
        y_true: (N, L) test targets, NaN where unknown.
        scores: model -> (N, L) test scores.
        thresholds: model -> (L,) val-chosen thresholds.
        groups: (N,) patient / scene of each test row; the bootstrap resamples these.
        attributes: attribute -> (N,) subgroup value of each test row (``attribute_values``).
        n_bootstrap, seed, ci_level: as for the headline metrics.
        min_groups: fewer groups in a subgroup or its rest: no interval.
        min_auroc: the gate's AUROC; a subgroup below it is flagged.
        fixed_specificity: passed to the ranking metrics (unused in the table).
    """
    y = np.asarray(y_true, dtype=np.float64)
    g = np.asarray(groups, dtype=str)
    weights = group_weights(g, n_bootstrap, seed)  # (B, N): one set of resamples for every row
    ones = np.ones((1, len(y)))
    rows = []
    for attribute, values in attributes.items():
        values = np.asarray(values, dtype=str)
        for value in sorted(set(values.tolist())):
            sub = values == value
            rest = ~sub
            n_groups, rest_groups = len(set(g[sub].tolist())), len(set(g[rest].tolist()))
            status = interval_status(n_groups, min_groups, rest_groups if rest.any() else None)
            has_ci = status == "ok" and weights.shape[0] > 0
            labels = valid_labels(y[sub]) & (valid_labels(y[rest]) if rest.any() else True)
            base = {"attribute": attribute, "value": value, "subgroup": f"{attribute}={value}", "n": int(sub.sum()),
                    "groups": n_groups, "n_labels": int(labels.sum()),
                    "prevalence": float(np.nanmean(prevalence(y[sub]))) if np.isfinite(y[sub]).any() else math.nan,
                    "interval": status}
            for model, s in scores.items():
                s = np.asarray(s, dtype=np.float64)
                thr = np.asarray(thresholds[model], dtype=np.float64)
                row = {"model": model, **base}
                point = _scores(y[sub], s[sub], thr, ones[:, sub], labels, fixed_specificity)
                boot = _scores(y[sub], s[sub], thr, weights[:, sub], labels, fixed_specificity) if has_ci else {}
                for k in ROW_METRICS:
                    lo, hi = percentile_ci(boot[k], ci_level) if has_ci else (math.nan, math.nan)
                    row.update({k: float(point[k][0]), f"{k}_ci_low": lo, f"{k}_ci_high": hi})
                diff = (math.nan, math.nan, math.nan)
                row["auroc_rest"] = math.nan
                if rest.any():
                    rest_point = _scores(y[rest], s[rest], thr, ones[:, rest], labels, fixed_specificity)["auroc"]
                    row["auroc_rest"] = float(rest_point[0])
                    lo = hi = math.nan
                    if has_ci:
                        rest_boot = _scores(y[rest], s[rest], thr, weights[:, rest], labels, fixed_specificity)
                        lo, hi = percentile_ci(boot["auroc"] - rest_boot["auroc"], ci_level)
                    diff = (row["auroc"] - row["auroc_rest"], lo, hi)
                row.update({"auroc_diff": diff[0], "auroc_diff_ci_low": diff[1], "auroc_diff_ci_high": diff[2]})
                reason = _flag(row["auroc"], diff, status, min_auroc)
                row.update({"flagged": int(bool(reason)), "flag_reason": reason})
                rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def flagged_summary(table: pd.DataFrame) -> list[str]:
    """One line per flagged row, for the comparison report and the console."""
    return [f"{r.model} {r.subgroup} (n={r.n}, {r.groups} groups): {r.flag_reason}"
            for r in table.itertuples() if r.flagged]
