"""Multi-label ranking metrics on (N, L) arrays.

Pure numpy/scikit-learn with no medvit imports, below train, zeroshot and
evaluate in the import order, so every stage reports the same
``<split>/<metric>`` names computed the same way.

Unknown targets are NaN (an ignored uncertain or blank label, see
``data/manifest.py``). Every metric masks them with ``np.isfinite``: a label's
metrics use its known rows only, the micro average pools the known (sample,
label) entries only, and ``n_known`` counts them per label.

A label without both classes among its known rows in a split has no AUROC/AP:
it is reported as NaN per label, left out of the macro average, and counted in
``n_labels_skipped``.

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

import re
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
# ``n_unknown``: unknown (masked) test targets over all labels.
COUNTS: tuple[str, ...] = ("n_labels_skipped", "n_samples", "n_groups", "n_unknown")
# The summary the quality gate judges and compares with the baselines.
PRIMARY = "auroc_macro"


def metric_key(name: str) -> str:
    """A label name made safe inside an MLflow metric name (letters, digits, ``_-. :``): ``test/<key>/auroc``."""
    return re.sub(r"[^A-Za-z0-9_\-. :]", "_", name)


def summary_names(metrics: tuple[Metric, ...] | None = None) -> list[str]:
    """Every summary name of ``metrics`` (default: ``METRICS``), macro first then micro
    (``auroc_macro``, ``ap_macro``, ..., ``auroc_micro``, ...)."""
    metrics = METRICS if metrics is None else metrics
    return [f"{m.name}_macro" for m in metrics] + [f"{m.name}_micro" for m in metrics if m.micro]


def bootstrapped() -> tuple[Metric, ...]:
    """The metrics with group-bootstrap CIs."""
    return tuple(m for m in METRICS if m.bootstrap)


def known_mask(y_true: np.ndarray) -> np.ndarray:
    """Boolean mask of the known targets (same shape): False where the target is NaN (unknown)."""
    return np.isfinite(np.asarray(y_true, dtype=np.float64))


def label_counts(y_true: np.ndarray) -> dict[str, np.ndarray]:
    """(L,) ``n_known``, ``n_pos`` and ``n_neg`` of (N, L) targets (unknown entries count in none)."""
    y = np.asarray(y_true, dtype=np.float64)
    known = np.isfinite(y)
    n_known = known.sum(axis=0)
    n_pos = np.where(known, y > 0.5, False).sum(axis=0)
    return {"n_known": n_known, "n_pos": n_pos, "n_neg": n_known - n_pos}


def valid_labels(y_true: np.ndarray) -> np.ndarray:
    """(L,) bool: labels with both classes among their known rows."""
    c = label_counts(y_true)
    return (c["n_pos"] > 0) & (c["n_neg"] > 0)


def prevalence(y_true: np.ndarray) -> np.ndarray:
    """(L,) positive rate among each label's known rows (NaN for a label without known rows)."""
    c = label_counts(y_true)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c["n_known"] > 0, c["n_pos"] / np.maximum(c["n_known"], 1), np.nan)


def per_label(y_true: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per-label ``auroc`` and ``ap`` on known rows (NaN without both classes), ``prevalence``, ``n_known``."""
    y_true = np.asarray(y_true, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and scores {scores.shape} must both be (N, L)")
    ok = valid_labels(y_true)
    known = known_mask(y_true)
    auroc = np.full(y_true.shape[1], np.nan)
    ap = np.full(y_true.shape[1], np.nan)
    for j in np.flatnonzero(ok):
        k = known[:, j]
        auroc[j] = roc_auc_score(y_true[k, j], scores[k, j])
        ap[j] = average_precision_score(y_true[k, j], scores[k, j])
    return {"auroc": auroc, "ap": ap, "prevalence": prevalence(y_true), "n_known": known.sum(axis=0)}


def summary(y_true: np.ndarray, scores: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Macro and micro AUROC/AP, e.g. ``{prefix}auroc_macro``; NaN-free when any label is valid.

    Unknown (NaN) targets are left out: per label, and from the pooled micro average.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    pl = per_label(y_true, scores)
    ok = valid_labels(y_true)
    out = {
        f"{prefix}auroc_macro": float(np.mean(pl["auroc"][ok])) if ok.any() else float("nan"),
        f"{prefix}ap_macro": float(np.mean(pl["ap"][ok])) if ok.any() else float("nan"),
        f"{prefix}n_labels_skipped": float((~ok).sum()),
    }
    known = known_mask(y_true).ravel()
    flat_t, flat_s = y_true.ravel()[known], scores.ravel()[known]
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


def label_ranking_metrics(
    y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray, fixed_specificity: float = 0.9
) -> dict[str, np.ndarray]:
    """``ranking_metrics`` of every label of (N, L) arrays on its known rows: metric -> (B, L).

    A label's unknown (NaN) rows are not passed on at all, so their scores and
    weights cannot matter; ``index`` keeps each known row on its sample's weights.
    """
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    known = known_mask(y)
    n_rows = np.atleast_2d(weights).shape[0]
    out = {k: np.full((n_rows, y.shape[1]), np.nan) for k in ("auroc", "ap", "sens_at_spec")}
    for j in range(y.shape[1]):
        rows = np.flatnonzero(known[:, j])
        for k, v in ranking_metrics(y[rows, j], s[rows, j], weights, fixed_specificity, index=rows).items():
            out[k][:, j] = v
    return out


def micro_ranking_metrics(
    y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray, fixed_specificity: float = 0.9
) -> dict[str, np.ndarray]:
    """``ranking_metrics`` of the known (sample, label) entries pooled, each on its sample's weight: (B,)."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    known = known_mask(y).ravel()
    index = np.repeat(np.arange(y.shape[0]), y.shape[1])[known]  # ravel() of (N, L) is row-major
    return ranking_metrics(y.ravel()[known], s.ravel()[known], weights, fixed_specificity, index=index)


def threshold_metrics(
    y_true: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV and F1 when ``score >= threshold`` predicts positive.

    Unknown (NaN) targets count as neither positive nor negative, nor as a call.

    Args:
        y_true: (N, L) 0/1 targets, NaN where unknown.
        scores: (N, L) scores.
        thresholds: (L,) one threshold per label.
        weights: (B, N) sample weights (default: one row of ones).

    Returns:
        ``sensitivity``, ``specificity``, ``ppv``, ``f1``: (B, L), NaN where undefined
        (sensitivity without positives, specificity without negatives, ...).
    """
    y_raw = np.asarray(y_true, dtype=np.float64)
    known = np.isfinite(y_raw).astype(np.float64)
    y = np.where(known > 0, y_raw, 0.0)  # (N, L) 0/1, unknown -> 0 and masked by ``known``
    thr = np.asarray(thresholds, dtype=np.float64)[None, :]
    pred = (np.asarray(scores, dtype=np.float64) >= thr).astype(np.float64) * known
    w = np.ones((1, y.shape[0])) if weights is None else np.atleast_2d(weights).astype(np.float64)
    tp, fp = w @ (y * pred), w @ ((1 - y) * pred)  # (B, L)
    n_pos, n_neg = w @ y, w @ ((1 - y) * known)
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = np.where(n_pos > 0, tp / n_pos, np.nan)
        spec = np.where(n_neg > 0, 1.0 - fp / n_neg, np.nan)
        ppv = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        # F1 = 2TP / (2TP + FP + FN) with FN = n_pos - TP
        f1 = np.where(n_pos > 0, 2 * tp / (tp + fp + n_pos), np.nan)
    return {"sensitivity": sens, "specificity": spec, "ppv": ppv, "f1": f1}


def sensitivity_at_specificity(y_true: np.ndarray, scores: np.ndarray, specificity: float) -> np.ndarray:
    """(L,) best sensitivity among thresholds with specificity >= ``specificity`` on known rows (NaN: one class)."""
    y_true = np.asarray(y_true)
    return label_ranking_metrics(y_true, scores, np.ones((1, y_true.shape[0])), specificity)["sens_at_spec"][0]
