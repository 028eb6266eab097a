"""Failure cases: per label, the fine-tuned model's most confident errors on test, with attention overlays.

At the val-chosen threshold (``score >= threshold`` is positive), the top-k false
positives are the negatives with the highest scores and the top-k false negatives the
positives with the lowest scores; unknown targets are never a failure. Written to
``reports/<d>/failures/``: ``failures.csv`` (``label, kind, rank, id, group, score,
threshold, image``) and one attention-rollout overlay per case,
``<label-key>_<fp|fn>_<rank>.png``. File names and titles carry the label and rank,
never an id; the ids in the table are the manifest's keyed pseudonyms. A case whose
image may hold burned-in annotation (``figures.attention_candidates``) is listed
without an overlay. Medical overlays are patient pixels: the evaluate stage uploads them
to MLflow only with ``evaluate.upload_patient_pixels: true``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from medvit.data.manifest import Manifest
from medvit.evaluate import plots

FAILURE_DIR = "failures"
KINDS = {"false_positive": "fp", "false_negative": "fn"}
COLUMNS = ("label", "kind", "rank", "id", "group", "score", "threshold", "image")


def select_failures(
    y_true: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    label_names: Sequence[str],
    ids: Sequence[str],
    groups: Sequence[str],
    k: int,
) -> pd.DataFrame:
    """Top-``k`` false positives (highest scores) and false negatives (lowest) per label.

    Returns:
        ``COLUMNS`` plus ``row`` (the test row), ``image`` empty; ties keep manifest order.
    """
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    rows = []
    for j, name in enumerate(label_names):
        called = s[:, j] >= thresholds[j]
        for kind, wrong, sign in (("false_positive", (y[:, j] == 0) & called, -1.0),
                                  ("false_negative", (y[:, j] == 1) & ~called, 1.0)):
            cand = np.flatnonzero(wrong)
            order = cand[np.argsort(sign * s[cand, j], kind="stable")][:k]
            for rank, i in enumerate(order, start=1):
                rows.append({"label": name, "kind": kind, "rank": rank, "id": str(ids[i]), "group": str(groups[i]),
                             "score": float(s[i, j]), "threshold": float(thresholds[j]), "image": "", "row": int(i)})
    return pd.DataFrame(rows, columns=[*COLUMNS, "row"])


def image_name(label: str, kind: str, rank: int) -> str:
    """Overlay file name: label key, fp/fn and rank (never an id)."""
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', label)}_{KINDS[kind]}_{rank}.png"


def write_failures(
    cache_dir: Path,
    manifest: Manifest,
    model_dir: Path,
    table: pd.DataFrame,
    out_dir: Path,
    drawable: np.ndarray,
) -> list[Path]:
    """Write ``failures/failures.csv`` and the overlays of the cases among ``drawable`` test rows.

    Overlays of an earlier run are removed first.

    Args:
        table: ``select_failures`` output.
        drawable: test row positions whose image may be shown (no burned-in annotation).
    """
    folder = out_dir / FAILURE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    table = table.copy()
    ok = np.isin(table["row"].to_numpy(dtype=int), drawable) if len(table) else np.zeros(0, dtype=bool)
    pngs = _draw(cache_dir, manifest, model_dir, table[ok], folder) if ok.any() else []
    table.loc[ok, "image"] = [p.name for p in pngs]
    table[list(COLUMNS)].to_csv(folder / "failures.csv", index=False, float_format="%.6g")
    return pngs


def _draw(cache_dir: Path, manifest: Manifest, model_dir: Path, cases: pd.DataFrame, folder: Path) -> list[Path]:
    """Attention-rollout overlays of ``cases`` (in table order), in batches."""
    import torch

    from medvit.data.cache import read_stats
    from medvit.data.dataset import CacheDataset
    from medvit.data.transforms import eval_transform
    from medvit.evaluate.attention import attention_rollout, display_image, find_vit
    from medvit.models.classifier import load_classifier

    model, meta = load_classifier(model_dir, fused_attn=False)  # explicit attention for the rollout
    vit = find_vit(model)
    transform = eval_transform(int(meta["img_size"]), meta["mean"], meta["std"], meta.get("interpolation", "bilinear"))
    data = CacheDataset(cache_dir, "test", manifest=manifest)
    try:
        channels = read_stats(cache_dir).get("channels", [])
    except FileNotFoundError:
        channels = []
    out = []
    records = cases.to_dict("records")
    for start in range(0, len(records), 16):
        batch = records[start:start + 16]
        images = [data.image(int(r["row"])) for r in batch]
        maps = attention_rollout(vit, torch.from_numpy(np.stack([transform(img) for img in images]))).numpy()
        for r, img, heat in zip(batch, images, maps):
            what = "false positive" if r["kind"] == "false_positive" else "false negative"
            sign = ">=" if r["kind"] == "false_positive" else "<"
            title = f"{r['label']}: {what} #{r['rank']}, score {r['score']:.3f} {sign} threshold {r['threshold']:.3f}"
            path = folder / image_name(r["label"], r["kind"], int(r["rank"]))
            out.append(plots.save_overlay(display_image(img, channels), heat, title, path))
    return out
