"""Curve data for ``dvc plots`` and PNG figures for people (matplotlib, Agg canvas).

The CSV files are long format, one row per curve point, so one file holds every
model and label and ``dvc plots show/diff`` can colour by label and dash by model
(templates in ``medvit/evaluate/templates``)::

    plots/roc.csv          model,label,fpr,tpr
    plots/pr.csv           model,label,recall,precision
    plots/reliability.csv  model,label,bin_lower,bin_upper,confidence,observed,count

Figures are drawn on a ``Figure`` with an explicit Agg canvas, so no GUI backend
or global pyplot state is touched.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from medvit.evaluate.calibration import reliability_bins
from medvit.metrics import known_mask, valid_labels

POOLED = "(all labels)"
_DIGITS = 6


def roc_frame(y_true: np.ndarray, scores: Mapping[str, np.ndarray], label_names: Sequence[str]) -> pd.DataFrame:
    """ROC points per model and label on its known rows (labels with one class have no curve)."""
    rows = []
    ok, known = valid_labels(y_true), known_mask(y_true)
    for model, s in scores.items():
        for j in np.flatnonzero(ok):
            k = known[:, j]
            fpr, tpr, _ = roc_curve(y_true[k, j], s[k, j])
            rows.append(pd.DataFrame({"model": model, "label": label_names[j], "fpr": fpr, "tpr": tpr}))
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["model", "label", "fpr", "tpr"])
    return out.round(_DIGITS)


def pr_frame(y_true: np.ndarray, scores: Mapping[str, np.ndarray], label_names: Sequence[str]) -> pd.DataFrame:
    """Precision-recall points per model and label on its known rows, in order of decreasing threshold."""
    rows = []
    ok, known = valid_labels(y_true), known_mask(y_true)
    for model, s in scores.items():
        for j in np.flatnonzero(ok):
            k = known[:, j]
            precision, recall, _ = precision_recall_curve(y_true[k, j], s[k, j])
            rows.append(pd.DataFrame({"model": model, "label": label_names[j],
                                      "recall": recall[::-1], "precision": precision[::-1]}))
    columns = ["model", "label", "recall", "precision"]
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
    return out.round(_DIGITS)


def reliability_frame(
    y_true: np.ndarray, scores: Mapping[str, np.ndarray], label_names: Sequence[str], n_bins: int
) -> pd.DataFrame:
    """Non-empty reliability bins per model, per label and pooled over labels (label ``(all labels)``).

    Unknown (NaN) targets fall in no bin (``calibration.reliability_bins``)."""
    rows = []
    for model, s in scores.items():
        parts = [(POOLED, y_true, s)] + [(n, y_true[:, j], s[:, j]) for j, n in enumerate(label_names)]
        for label, yy, ss in parts:
            b = reliability_bins(yy, ss, n_bins)
            rows.append(pd.DataFrame({"model": model, "label": label, "bin_lower": b["lower"], "bin_upper": b["upper"],
                                      "confidence": b["confidence"], "observed": b["observed"], "count": b["count"]}))
    out = pd.concat(rows, ignore_index=True)
    return out[out["count"] > 0].reset_index(drop=True).round(_DIGITS)  # empty bins have no point


def _grid(n: int, size: float = 3.2) -> tuple[Figure, list]:
    cols = min(4, max(1, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(size * cols, size * rows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel().tolist()
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes[:n]


def save_curves(
    frame: pd.DataFrame,
    x: str,
    y: str,
    path: str | Path,
    title: str,
    legend: Mapping[tuple[str, str], str] | None = None,
    chance: Mapping[str, float] | None = None,
) -> Path:
    """One subplot per label, one line per model.

    Args:
        frame: long-format curve points (``model``, ``label``, x, y columns).
        legend: optional text per (model, label), e.g. the AUROC.
        chance: optional chance level per label drawn dashed (PR: prevalence); the
            ROC diagonal is drawn when ``x == "fpr"``.
    """
    labels = list(dict.fromkeys(frame["label"]))
    fig, axes = _grid(max(1, len(labels)))
    for ax, label in zip(axes, labels):
        part = frame[frame["label"] == label]
        for model, curve in part.groupby("model", sort=False):
            text = f"{model} {legend[(model, label)]}" if legend and (model, label) in legend else str(model)
            ax.plot(curve[x], curve[y], lw=1.4, label=text, drawstyle="steps-post" if x == "fpr" else "default")
        if x == "fpr":
            ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=0.8)
        elif chance and label in chance:
            ax.axhline(chance[label], ls="--", c="0.6", lw=0.8)
        ax.set(title=label, xlabel=x, ylabel=y, xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=7, loc="lower right" if x == "fpr" else "lower left")
    if not labels:
        axes[0].text(0.5, 0.5, "no label has both classes", ha="center")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return Path(path)


def save_reliability(frame: pd.DataFrame, path: str | Path, ece: Mapping[str, float] | None = None) -> Path:
    """One subplot per model: the pooled reliability curve, per-label curves faint, and bin counts."""
    models = list(dict.fromkeys(frame["model"]))
    fig, axes = _grid(len(models), size=3.6)
    for ax, model in zip(axes, models):
        part = frame[frame["model"] == model]
        for label, b in part.groupby("label", sort=False):
            full = b["count"] > 0
            pooled = label == POOLED
            ax.plot(b["confidence"][full], b["observed"][full], marker="o" if pooled else None,
                    lw=2 if pooled else 0.8, alpha=1 if pooled else 0.35, c="C0" if pooled else None,
                    label="all labels" if pooled else None)
        ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=0.8)
        pooled = part[part["label"] == POOLED]
        twin = ax.twinx()
        twin.bar((pooled["bin_lower"] + pooled["bin_upper"]) / 2, pooled["count"],
                 width=pooled["bin_upper"] - pooled["bin_lower"], alpha=0.15, color="0.3")
        twin.set_yticks([])
        name = f"{model} (ECE {ece[model]:.3f})" if ece and model in ece else model
        ax.set(title=name, xlabel="mean score", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Reliability (test)")
    fig.savefig(path, dpi=110)
    return Path(path)


def save_overlay(image: np.ndarray, heat: np.ndarray, title: str, path: str | Path) -> Path:
    """Side by side: the image and the attention map over it.

    Args:
        image: (H, W) grey or (H, W, 3) RGB display image in [0, 1].
        heat: (h, w) map in [0, 1], stretched over the image.
    """
    fig = Figure(figsize=(7.0, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    a, b = fig.subplots(1, 2)
    h, w = image.shape[:2]
    cmap = "gray" if image.ndim == 2 else None
    for ax in (a, b):
        ax.imshow(image, cmap=cmap, vmin=0, vmax=1)
        ax.set_axis_off()
    b.imshow(heat, cmap="inferno", alpha=0.5, extent=(-0.5, w - 0.5, h - 0.5, -0.5),  # pixel-edge aligned
             interpolation="bilinear", vmin=0, vmax=1)
    a.set_title("image", fontsize=9)
    b.set_title("attention rollout", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)
    return Path(path)


def save_forest(table: pd.DataFrame, path: str | Path, min_auroc: float | None = None) -> Path:
    """Forest plot of ``subgroups.csv``: AUROC per subgroup (rows) and model (colours) with CIs.

    A subgroup without an interval (too few groups) is drawn as a hollow marker without bars;
    one where the first model (the fine-tuned one) is flagged is marked ``*`` in its row name.
    """
    subgroups = list(dict.fromkeys(table["subgroup"]))
    models = list(dict.fromkeys(table["model"]))
    fig = Figure(figsize=(9.5, 1.2 + 0.28 * max(1, len(subgroups))), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    step = 0.7 / max(1, len(models))
    flagged = set(table.loc[(table["flagged"] > 0) & (table["model"] == models[0] if models else False), "subgroup"])
    for k, model in enumerate(models):
        part = table[table["model"] == model].set_index("subgroup").reindex(subgroups)
        ypos = np.arange(len(subgroups)) + (k - (len(models) - 1) / 2) * step
        has_ci = part["auroc_ci_low"].notna().to_numpy()
        x = part["auroc"].to_numpy(dtype=float)
        err = np.abs(np.vstack([x - part["auroc_ci_low"].to_numpy(float), part["auroc_ci_high"].to_numpy(float) - x]))
        if has_ci.any():
            ax.errorbar(x[has_ci], ypos[has_ci], xerr=err[:, has_ci], fmt="o", ms=4, c=f"C{k}", capsize=2, label=model)
        ax.plot(x[~has_ci], ypos[~has_ci], "o", ms=4, mfc="none", c=f"C{k}",
                label=f"{model} (too few groups for an interval)" if (~has_ci).any() else None)
    if min_auroc is not None:
        ax.axvline(min_auroc, ls="--", c="0.5", lw=0.8, label=f"register.min_auroc {min_auroc:g}")
    ax.set_yticks(np.arange(len(subgroups)), [s + (" *" if s in flagged else "") for s in subgroups], fontsize=7)
    ax.invert_yaxis()
    first = models[0] if models else ""
    ax.set(xlabel="test AUROC (macro)", xlim=(0, 1.02), title=f"AUROC per subgroup (* {first} flagged)")
    if subgroups:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.text(0.5, 0.5, "no subgroup column in the manifest", ha="center", transform=ax.transAxes)
    fig.savefig(path, dpi=110)
    return Path(path)
