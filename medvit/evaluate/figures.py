"""Write the evaluate stage's plot data (``plots/``) and figures (``figures/``).

Attention maps are drawn only for test images without burned-in annotation
(manifest column ``burned_in``, when ingest records it), and their file names
carry a running number, never a sample id.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from medvit.data.manifest import Manifest
from medvit.evaluate import plots
from medvit.evaluate.inputs import FINETUNE
from medvit.evaluate.report import Evaluation

log = logging.getLogger(__name__)

BURNED_IN_COLUMN = "burned_in"
ATTENTION_PREFIX = "attention_"


def write_plots(ev: Evaluation, y_test: np.ndarray, test_scores: Mapping[str, np.ndarray], out_dir: Path) -> list[Path]:
    """ROC, PR and reliability data (CSV, for ``dvc plots``) and figures (PNG); returns the PNGs."""
    plot_dir, fig_dir = out_dir / "plots", out_dir / "figures"
    plot_dir.mkdir(parents=True, exist_ok=True)
    fig_dir.mkdir(parents=True, exist_ok=True)
    names = list(ev.label_names)
    roc = plots.roc_frame(y_test, test_scores, names)
    pr = plots.pr_frame(y_test, test_scores, names)
    rel = plots.reliability_frame(y_test, test_scores, names, int(ev.settings["ece_bins"]))
    roc.to_csv(plot_dir / "roc.csv", index=False)
    pr.to_csv(plot_dir / "pr.csv", index=False)
    rel.to_csv(plot_dir / "reliability.csv", index=False)
    auc = {(m, n): f"{ev.test[m].label['auroc'][j]:.3f}" for m in ev.models for j, n in enumerate(names)}
    ap = {(m, n): f"{ev.test[m].label['ap'][j]:.3f}" for m in ev.models for j, n in enumerate(names)}
    prevalence = dict(zip(names, ev.test[FINETUNE].label["prevalence"]))
    return [
        plots.save_curves(roc, "fpr", "tpr", fig_dir / "roc.png", "ROC (test)", legend=auc),
        plots.save_curves(pr, "recall", "precision", fig_dir / "pr.png", "Precision-recall (test)",
                          legend=ap, chance=prevalence),
        plots.save_reliability(rel, fig_dir / "reliability.png", ece=ev.ece_micro),
    ]


def attention_candidates(manifest: Manifest, burned_in_possible: bool = False) -> np.ndarray:
    """Row positions in the test split whose image carries no burned-in annotation.

    Args:
        burned_in_possible: the cache may hold burned-in images (medical ingest with
            ``allow_burned_in``); without a ``burned_in`` column to tell them apart,
            no image qualifies.
    """
    test = manifest.split("test")
    if BURNED_IN_COLUMN not in test:
        return np.arange(0 if burned_in_possible else len(test))
    burned = test[BURNED_IN_COLUMN].astype(str).str.strip().str.lower().isin({"1", "1.0", "true", "yes"})
    return np.flatnonzero(~burned.to_numpy())


def write_attention_maps(
    cache_dir: Path,
    manifest: Manifest,
    model_dir: Path,
    scores: np.ndarray,
    n_maps: int,
    seed: int,
    out_dir: Path,
    burned_in_possible: bool = False,
) -> list[Path]:
    """Attention-rollout overlays of ``n_maps`` seeded test images: ``figures/attention_<k>.png``.

    Overlays left by an earlier run are removed first (also when ``n_maps`` is 0).

    Args:
        scores: (N_test, L) fine-tuned test scores, shown in each title.
        burned_in_possible: see ``attention_candidates``.
    """
    import torch

    from medvit.data.cache import read_stats
    from medvit.data.dataset import CacheDataset
    from medvit.data.transforms import eval_transform
    from medvit.evaluate.attention import attention_rollout, display_image, find_vit
    from medvit.models.classifier import load_classifier

    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in fig_dir.glob(f"{ATTENTION_PREFIX}*.png"):
        old.unlink()
    if n_maps == 0:
        return []
    candidates = attention_candidates(manifest, burned_in_possible)
    if len(candidates) == 0:
        log.warning("no attention maps: no test image is known to be free of burned-in annotation "
                    "(manifest column '%s')", BURNED_IN_COLUMN)
        return []
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(candidates, size=min(n_maps, len(candidates)), replace=False))
    model, meta = load_classifier(model_dir, fused_attn=False)  # explicit attention for the rollout
    vit = find_vit(model)
    transform = eval_transform(int(meta["img_size"]), meta["mean"], meta["std"],
                               meta.get("interpolation", "bilinear"))
    data = CacheDataset(cache_dir, "test", manifest=manifest)
    images = [data.image(int(i)) for i in picked]
    batch = torch.from_numpy(np.stack([transform(img) for img in images]))
    maps = attention_rollout(vit, batch).numpy()  # (n, gh, gw)
    try:
        channels = read_stats(cache_dir).get("channels", [])
    except FileNotFoundError:
        channels = []
    names = list(manifest.label_names)
    y = manifest.labels("test")
    out = []
    for k, (i, img, heat) in enumerate(zip(picked, images, maps)):
        top = np.argsort(-scores[i])[:3]
        pred = ", ".join(f"{names[j]} {scores[i, j]:.2f}" for j in top)
        truth = ", ".join(n for n, v in zip(names, y[i]) if v > 0) or "none"
        title = f"test image {k + 1}: top scores {pred} | labels: {truth}"
        path = fig_dir / f"{ATTENTION_PREFIX}{k}.png"
        out.append(plots.save_overlay(display_image(img, channels), heat, title, path))
    return out

