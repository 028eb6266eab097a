"""Writing the finetune outputs: weights + meta, score tables, history.csv, metrics.json, run artifacts."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medvit.io.atomic import atomic_open

HISTORY_COLUMNS: tuple[str, ...] = ("epoch", "train/loss", "val/loss", "val/auroc_macro", "val/ap_macro", "lr")


def write_history(path: str | Path, history: Sequence[dict[str, float]]) -> None:
    """One row per epoch (``HISTORY_COLUMNS``; missing values left empty), written atomically."""
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HISTORY_COLUMNS)
        for row in history:
            w.writerow([_fmt(row.get(c)) for c in HISTORY_COLUMNS])


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() and abs(v) > 1 else f"{v:.6g}"


def plot_learning_curves(path: str | Path, history: Sequence[dict[str, float]], title: str = "") -> Path:
    """Loss (train/val) and val AUROC/AP per epoch, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key in ("train/loss", "val/loss"):
        ax1.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", label=key)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    for key in ("val/auroc_macro", "val/ap_macro"):
        ax2.plot(epochs, [h.get(key, float("nan")) for h in history], marker="o", label=key)
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_outputs(out: Path, model: Any, meta: dict[str, Any], scores: dict[str, np.ndarray],
                  ids: dict[str, list[str]], history: Sequence[dict[str, float]], summary: dict[str, Any]) -> None:
    """The stage's outputs in ``out``: model.safetensors + meta.json, scores/<split>.csv, history.csv, metrics.json."""
    from medvit.io.atomic import write_json_atomic
    from medvit.data.scores import write_scores
    from medvit.models.classifier import save_classifier

    save_classifier(model, meta, out)
    for split, s in scores.items():
        write_scores(out / "scores" / f"{split}.csv", ids[split], s, meta["label_names"])
    write_history(out / "history.csv", history)
    write_json_atomic(out / "metrics.json", summary)


def write_run_artifacts(folder: Path, history: Sequence[dict[str, float]], label_names: Sequence[str],
                        config: dict[str, Any], title: str) -> Path:
    """Learning curves PNG, label names and the finetune config in ``folder`` (for the tracking run)."""
    plot_learning_curves(folder / "learning_curves.png", history, title)
    (folder / "label_names.json").write_text(json.dumps(list(label_names), indent=1))
    (folder / "finetune_params.json").write_text(json.dumps(config, indent=1, sort_keys=True))
    return folder
