"""Multi-label ranking metrics on (N, L) arrays.

Pure numpy/scikit-learn with no medvit imports, below train, zeroshot and
evaluate in the import order, so every stage reports the same
``<split>/<metric>`` names computed the same way.

A label with a single class in a split has no AUROC/AP: it is reported as NaN
per label, left out of the macro average, and counted in ``n_labels_skipped``.

``per_label``/``summary`` are the quick per-epoch numbers. ``ranking_metrics``
and ``threshold_metrics`` take a (B, N) matrix of sample weights and return B
values at once: with unit weights they are the point estimates of the evaluate
stage, with group-resample multiplicities its bootstrap replicates.

``METRICS`` is the one list of test metric names: the evaluate report, the
bootstrap, the registry's version tags and the model card all loop over it, so a
new metric is an entry here plus its computation (``ranking_metrics`` /
``threshold_metrics``, or calibration for a metric without bootstrap CIs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


@dataclass(frozen=True)
class Metric:
    """One test metric, computed per label and summarised over labels.

    Attributes:
        name: the per-label key (``test/<label>/<name>``); its summaries are
            ``test/<name>_macro`` (mean over labels with both classes) and, with
            ``micro``, ``test/<name>_micro`` (pooled over every (sample, label) pair).
        title: its column title in the comparison table (``{spec}`` is replaced by
            the fixed specificity).
        micro: also report the pooled summary (bootstrapped: ranking metrics only).
        bootstrap: has group-bootstrap CIs (``_ci_low`` / ``_ci_high``); False for
            calibration, which evaluate computes once on the full split.
        paired: the fine-tuned minus baseline difference of the macro summary, with
            its paired CI and p-value (``test/<name>_macro_diff``), is reported.
        headline: shown in the model card's table and tagged per baseline.
        table: the summaries shown as comparison-table columns.
    """

    name: str
    title: str
    micro: bool = False
    bootstrap: bool = True
    paired: bool = False
    headline: bool = False
    table: tuple[str, ...] = ("macro",)

    @property
    def summaries(self) -> tuple[str, ...]:
        """``<name>_macro`` and, with ``micro``, ``<name>_micro``."""
        return (f"{self.name}_macro",) + ((f"{self.name}_micro",) if self.micro else ())


# Order = column order of per_label.csv and of the comparison table.
METRICS: tuple[Metric, ...] = (
    Metric("auroc", "AUROC", micro=True, paired=True, headline=True, table=("macro", "micro")),
    Metric("ap", "AP", micro=True, paired=True, headline=True),
    Metric("sens_at_spec", "sens @ spec {spec:g}"),
    Metric("sensitivity", "sens @ thr"),
    Metric("specificity", "spec @ thr"),
    Metric("f1", "F1 @ thr"),
    Metric("ece", "ECE", micro=True, bootstrap=False, table=("micro",)),
)
# Counts reported beside the metrics (``test/<name>``) and tagged on registered versions.
COUNTS: tuple[str, ...] = ("n_labels_skipped", "n_samples", "n_groups")
# The summary the quality gate judges and compares with the baselines.
PRIMARY = "auroc_macro"


def summary_names(metrics: tuple[Metric, ...] | None = None) -> list[str]:
    """Every summary name of ``metrics`` (default: ``METRICS``), macro first then micro
    (``auroc_macro``, ``ap_macro``, ..., ``auroc_micro``, ...)."""
    metrics = METRICS if metrics is None else metrics
    return [f"{m.name}_macro" for m in metrics] + [f"{m.name}_micro" for m in metrics if m.micro]


def bootstrapped() -> tuple[Metric, ...]:
    """The metrics with group-bootstrap CIs."""
    return tuple(m for m in METRICS if m.bootstrap)


def valid_labels(y_true: np.ndarray) -> np.ndarray:
    """(L,) bool: labels with both classes present."""
    pos = y_true.sum(axis=0)
    return (pos > 0) & (pos < y_true.shape[0])


def per_label(y_true: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per-label ``auroc`` and ``ap`` (NaN where a label has one class) and ``prevalence``."""
    y_true = np.asarray(y_true, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and scores {scores.shape} must both be (N, L)")
    ok = valid_labels(y_true)
    auroc = np.full(y_true.shape[1], np.nan)
    ap = np.full(y_true.shape[1], np.nan)
    for j in np.flatnonzero(ok):
        auroc[j] = roc_auc_score(y_true[:, j], scores[:, j])
        ap[j] = average_precision_score(y_true[:, j], scores[:, j])
    return {"auroc": auroc, "ap": ap, "prevalence": y_true.mean(axis=0) if len(y_true) else np.zeros(y_true.shape[1])}


def summary(y_true: np.ndarray, scores: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Macro and micro AUROC/AP, e.g. ``{prefix}auroc_macro``; NaN-free when any label is valid."""
    y_true = np.asarray(y_true, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    pl = per_label(y_true, scores)
    ok = valid_labels(y_true)
    out = {
        f"{prefix}auroc_macro": float(np.mean(pl["auroc"][ok])) if ok.any() else float("nan"),
        f"{prefix}ap_macro": float(np.mean(pl["ap"][ok])) if ok.any() else float("nan"),
        f"{prefix}n_labels_skipped": float((~ok).sum()),
    }
    flat_t, flat_s = y_true.ravel(), scores.ravel()
    if 0 < flat_t.sum() < flat_t.size:
        out[f"{prefix}auroc_micro"] = float(roc_auc_score(flat_t, flat_s))
        out[f"{prefix}ap_micro"] = float(average_precision_score(flat_t, flat_s))
    return out


# ----------------------------------------------------------------------------- weighted ranking metrics
# The bootstrap draws integer multiplicities (weights) per sample instead of
# copying rows, so every metric below takes a (B, N) weight matrix and returns
# B values at once. Unit weights (B=1) give the ordinary point estimate; tests
# check them against scikit-learn (which accepts the same weights as
# ``sample_weight``).

_CHUNK_ELEMENTS = 1_000_000  # (entries, b) float64 work arrays of ~8 MB per chunk (cache-friendly)


def ranking_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray,
    fixed_specificity: float = 0.9,
    index: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Weighted AUROC, average precision and sensitivity at a fixed specificity for one label.

    Positives and negatives are sorted once. For each positive, the negative
    weight ranked above it is a gather from the cumulative negative weight, so a
    batch of resamples costs two cumulative sums and a few passes over the
    positives, in chunks of resamples. Tied scores form one operating point (a tied
    positive/negative pair counts 1/2 in AUROC), exactly as scikit-learn's
    ``roc_auc_score`` / ``average_precision_score`` with ``sample_weight``.

    Args:
        y_true: (N,) 0/1 targets.
        scores: (N,) scores, higher = more likely positive.
        weights: (B, M) non-negative sample weights (multiplicities) of B resamples.
        fixed_specificity: specificity at which sensitivity is read off the ROC
            operating points (no interpolation: the best sensitivity among
            thresholds whose specificity is at least this value).
        index: (N,) column of ``weights`` holding each entry's weight (default:
            column i for entry i; the micro average maps the flattened (N*L)
            entries onto their N samples).

    Returns:
        ``auroc``, ``ap``, ``sens_at_spec``: (B,) arrays, NaN for a resample in
        which the label has no positive or no negative weight.
    """
    y = np.asarray(y_true, dtype=np.float64) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    # Work on (entries, resamples): gathering an entry's weights then copies one
    # contiguous row, and the cumulative sums run down axis 0 across all resamples.
    # ``weights.T`` is free (no copy) when the caller passes the transpose of a
    # C-contiguous (M, B) array, as ``bootstrap.group_weights`` does.
    w_t = np.atleast_2d(weights).T  # (M, B)
    cols = np.arange(len(s)) if index is None else np.asarray(index)
    order = np.argsort(-s, kind="stable")  # descending score
    pos, neg = order[y[order]], order[~y[order]]
    neg_key, pos_key = -s[neg], -s[pos]  # ascending keys for searchsorted
    above = np.searchsorted(neg_key, pos_key, side="left")  # (P,) negatives scoring > each positive
    at_or_above = np.searchsorted(neg_key, pos_key, side="right")  # (P,) negatives scoring >= it
    pos_at_or_above = np.searchsorted(pos_key, pos_key, side="right")  # (P,) positives scoring >= it
    ties = bool((above != at_or_above).any() or (pos_at_or_above != np.arange(1, len(pos) + 1)).any())
    n_rows = w_t.shape[1]
    out = {k: np.full(n_rows, np.nan) for k in ("auroc", "ap", "sens_at_spec")}
    if len(pos) == 0 or len(neg) == 0:
        return out
    step = max(1, _CHUNK_ELEMENTS // len(s))
    for r0 in range(0, n_rows, step):
        sl = slice(r0, min(r0 + step, n_rows))
        w_pos = w_t[cols[pos], sl].astype(np.float64)  # (P, b) positives in descending score order
        cum_neg = np.zeros((len(neg) + 1, w_pos.shape[1]))  # row k = weight of the k top-scoring negatives
        np.cumsum(w_t[cols[neg], sl], axis=0, dtype=np.float64, out=cum_neg[1:])
        fp_ge = cum_neg[at_or_above]  # (P, b) negative weight scoring >= each positive
        if ties:
            cum_pos = np.zeros((len(pos) + 1, w_pos.shape[1]))
            np.cumsum(w_pos, axis=0, out=cum_pos[1:])
            tp_ge = cum_pos[pos_at_or_above]
            n_pos = cum_pos[-1]
            # each positive beats the negatives below it and half of those tied with it
            beaten = np.einsum("ij,ij->j", w_pos, cum_neg[above] + fp_ge) * 0.5
        else:
            tp_ge = np.cumsum(w_pos, axis=0)
            n_pos = tp_ge[-1]
            beaten = np.einsum("ij,ij->j", w_pos, fp_ge)
        n_neg = cum_neg[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            auroc = (n_pos * n_neg - beaten) / (n_pos * n_neg)
            called = tp_ge + fp_ge
            precision = np.divide(tp_ge, called, out=np.zeros_like(tp_ge), where=called > 0)
            ap = np.einsum("ij,ij->j", w_pos, precision) / n_pos
            allowed = fp_ge <= (1.0 - fixed_specificity + 1e-12) * n_neg
            sens = np.where(allowed, tp_ge, 0.0).max(axis=0) / n_pos
        bad = (n_pos <= 0) | (n_neg <= 0)
        for k, v in (("auroc", auroc), ("ap", ap), ("sens_at_spec", sens)):
            out[k][sl] = np.where(bad, np.nan, v)
    return out


def threshold_metrics(
    y_true: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV and F1 when ``score >= threshold`` predicts positive.

    Args:
        y_true: (N, L) 0/1 targets.
        scores: (N, L) scores.
        thresholds: (L,) one threshold per label.
        weights: (B, N) sample weights (default: one row of ones).

    Returns:
        ``sensitivity``, ``specificity``, ``ppv``, ``f1``: (B, L), NaN where undefined
        (sensitivity without positives, specificity without negatives, ...).
    """
    y = np.asarray(y_true, dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64)[None, :]
    pred = (np.asarray(scores, dtype=np.float64) >= thr).astype(np.float64)
    w = np.ones((1, y.shape[0])) if weights is None else np.atleast_2d(weights).astype(np.float64)
    tp, fp = w @ (y * pred), w @ ((1 - y) * pred)  # (B, L)
    n_pos, n_neg = w @ y, w @ (1 - y)
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = np.where(n_pos > 0, tp / n_pos, np.nan)
        spec = np.where(n_neg > 0, 1.0 - fp / n_neg, np.nan)
        ppv = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        # F1 = 2TP / (2TP + FP + FN) with FN = n_pos - TP
        f1 = np.where(n_pos > 0, 2 * tp / (tp + fp + n_pos), np.nan)
    return {"sensitivity": sens, "specificity": spec, "ppv": ppv, "f1": f1}


def sensitivity_at_specificity(y_true: np.ndarray, scores: np.ndarray, specificity: float) -> np.ndarray:
    """(L,) best sensitivity among thresholds with specificity >= ``specificity`` (NaN: one class)."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    ones = np.ones((1, y_true.shape[0]))
    return np.array([
        ranking_metrics(y_true[:, j], scores[:, j], ones, specificity)["sens_at_spec"][0]
        for j in range(y_true.shape[1])
    ])
