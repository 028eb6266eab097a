"""Regenerate the notebooks from this script (keeps them reviewable as code): python notebooks/build_notebooks.py"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent

SETUP = '''import os
from pathlib import Path

# MEDVIT_ROOT points at a repo whose pipeline has run (default: this repo).
ROOT = Path(os.environ.get("MEDVIT_ROOT", Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
DOMAINS = [d for d in ("medical", "satellite") if (ROOT / "data" / "cache" / d / "manifest.csv").exists()]
assert DOMAINS, f"no ingest cache under {ROOT}/data/cache: run `dvc repro` first"
%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
print(ROOT, DOMAINS)'''


def exploration() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.cells = [
        nbf.v4.new_markdown_cell(
            "# Data exploration\n\nDe-identified samples per label, label co-occurrence, split balance and, for "
            "GeoTIFF, per-band histograms. Everything here reads the **ingest cache** only (no raw DICOM headers, "
            "no PHI): `data/cache/<domain>/`."),
        nbf.v4.new_code_cell(SETUP),
        nbf.v4.new_code_cell('''from medvit.data.dataset import CacheDataset
from medvit.data.manifest import read_manifest, label_column

manifests = {d: read_manifest(ROOT / "data" / "cache" / d) for d in DOMAINS}
for d, m in manifests.items():
    print(d, len(m.frame), "samples,", m.num_labels, "labels:", ", ".join(m.label_names))'''),
        nbf.v4.new_markdown_cell("## A grid of de-identified samples per label"),
        nbf.v4.new_code_cell('''def show(img):
    # (C, H, W) -> something imshow can draw: one channel as grey, >=3 bands as a false-colour stretch
    if img.shape[0] == 1:
        return img[0], "gray"
    rgb = img[[min(2, img.shape[0] - 1), 1, 0]].transpose(1, 2, 0)
    lo, hi = np.percentile(rgb, [2, 98])
    return np.clip((rgb - lo) / (hi - lo + 1e-6), 0, 1), None

for d, m in manifests.items():
    ds = CacheDataset(ROOT / "data" / "cache" / d, "train", manifest=m)
    labels = ds.labels
    n = 4
    fig, axes = plt.subplots(m.num_labels, n, figsize=(2 * n, 2 * m.num_labels), squeeze=False)
    for j, name in enumerate(m.label_names):
        idx = np.flatnonzero(labels[:, j] == 1)[:n]
        for k in range(n):
            ax = axes[j, k]
            ax.axis("off")
            if k < len(idx):
                im, cmap = show(ds.image(int(idx[k])))
                ax.imshow(im, cmap=cmap)
        axes[j, 0].set_title(name, loc="left", fontsize=9)
    fig.suptitle(f"{d}: train samples per label")
    plt.show()'''),
        nbf.v4.new_markdown_cell("## Label co-occurrence"),
        nbf.v4.new_code_cell('''for d, m in manifests.items():
    y = np.nan_to_num(m.labels())  # unknown (masked) entries are NaN: count known positives only
    co = y.T @ y
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(co, cmap="Blues")
    ax.set_xticks(range(m.num_labels), m.label_names, rotation=90)
    ax.set_yticks(range(m.num_labels), m.label_names)
    for (i, j), v in np.ndenumerate(co):
        ax.text(j, i, int(v), ha="center", va="center", fontsize=7)
    ax.set_title(f"{d}: co-occurrence (known positives)")
    plt.show()'''),
        nbf.v4.new_markdown_cell("## Split balance (samples and groups per split, prevalence per label)"),
        nbf.v4.new_code_cell('''for d, m in manifests.items():
    f = m.frame
    cols = [label_column(n) for n in m.label_names]
    table = f.groupby("split")[cols].mean().rename(columns=dict(zip(cols, m.label_names)))
    table.insert(0, "groups", f.groupby("split")["group"].nunique())
    table.insert(0, "samples", f.groupby("split").size())
    print(d)
    display(table.round(3))
    assert f.groupby("group")["split"].nunique().max() == 1, "a group appears in two splits"'''),
        nbf.v4.new_markdown_cell("## GeoTIFF band histograms (cache values, train split)"),
        nbf.v4.new_code_cell('''import json
for d, m in manifests.items():
    stats = json.loads((ROOT / "data" / "cache" / d / "stats.json").read_text())
    if d != "satellite":
        continue
    ds = CacheDataset(ROOT / "data" / "cache" / d, "train", manifest=m)
    sample = np.stack([ds.image(i) for i in range(min(len(ds), 200))])  # (N, C, H, W)
    fig, axes = plt.subplots(1, sample.shape[1], figsize=(3 * sample.shape[1], 2.5), squeeze=False)
    for c, name in enumerate(stats["channels"]):
        axes[0, c].hist(sample[:, c].ravel(), bins=50, color="C%d" % c)
        axes[0, c].set_title(f"{name} (mean {stats['mean'][c]:.3f})", fontsize=9)
    plt.show()'''),
    ]
    return nb


def comparison() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.cells = [
        nbf.v4.new_markdown_cell(
            "# Run comparison from MLflow\n\nThe fine-tuned model against the CLIP baselines: the runs of one "
            "pipeline (evaluate's `pipeline_id`, `finetune_pipeline_id` and `zeroshot_pipeline_id` tags), per-label "
            "test AUROC with bootstrap CIs, and the evaluate run's figures. Uses `MLFLOW_TRACKING_URI` or the "
            "embedded store."),
        nbf.v4.new_code_cell(SETUP),
        nbf.v4.new_code_cell('''import mlflow
from mlflow import MlflowClient

uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / '.mlflow' / 'mlflow.db'}"
mlflow.set_tracking_uri(uri)
client = MlflowClient()
runs = {}
for d in DOMAINS:
    exp = client.get_experiment_by_name(f"medvit-{d}")
    assert exp is not None, f"no MLflow experiment medvit-{d} at {uri}"
    df = mlflow.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    runs[d] = df
    latest = df[df["tags.stage"] == "evaluate"].iloc[0]
    # each stage records the id of its own inputs; evaluate also records those of the runs it compared
    pids = [latest[f"tags.{k}"] for k in ("pipeline_id", "finetune_pipeline_id", "zeroshot_pipeline_id")]
    linked = df[df["tags.pipeline_id"].isin(pids)]
    print(d, "pipeline", latest["tags.pipeline_id"])
    display(linked[["tags.mlflow.runName", "tags.stage", "tags.weights", "status"]])'''),
        nbf.v4.new_markdown_cell("## Test macro AUROC: fine-tuned vs baselines"),
        nbf.v4.new_code_cell('''for d, df in runs.items():
    ev = df[df["tags.stage"] == "evaluate"].iloc[0]
    cols = [c for c in df.columns if c.startswith("metrics.") and c.endswith("test/auroc_macro")]
    vals = {c.removeprefix("metrics.").removesuffix("/test/auroc_macro") or "finetune": ev[c] for c in cols}
    print(d, {k: round(float(v), 3) for k, v in vals.items()})
    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.barh(list(vals), list(vals.values()))
    ax.set_xlim(0, 1)
    ax.axvline(0.5, color="grey", lw=0.5)
    ax.set_title(f"{d}: test macro AUROC")
    plt.show()'''),
        nbf.v4.new_markdown_cell("## Per-label test AUROC with 95% CIs (the evaluate stage's `per_label.csv`)"),
        nbf.v4.new_code_cell('''for d in DOMAINS:
    table = pd.read_csv(ROOT / "reports" / d / "per_label.csv")
    table = table.rename(columns={"auroc_ci_low": "ci_low", "auroc_ci_high": "ci_high"})
    display(table[["model", "label", "auroc", "ci_low", "ci_high"]].round(3))
    fig, ax = plt.subplots(figsize=(5, 0.4 * len(table) + 1))
    for k, (model, sub) in enumerate(table.groupby("model")):
        y = np.arange(len(sub)) + 0.2 * k
        ax.errorbar(sub["auroc"], y, xerr=[sub["auroc"] - sub["ci_low"], sub["ci_high"] - sub["auroc"]],
                    fmt="o", label=model)
    ax.set_yticks(np.arange(len(sub)), sub["label"])
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(f"{d}: per-label test AUROC")
    plt.show()'''),
        nbf.v4.new_markdown_cell("## The evaluate run's figures (MLflow artifacts)"),
        nbf.v4.new_code_cell('''import matplotlib.image as mpimg
for d, df in runs.items():
    ev = df[df["tags.stage"] == "evaluate"].iloc[0]
    arts = [a.path for a in client.list_artifacts(ev.run_id, "figures")]
    print(d, len(arts), "figures:", arts[:6])
    assert arts, "the evaluate run has no figures"
    local = client.download_artifacts(ev.run_id, arts[0])
    plt.imshow(mpimg.imread(local)); plt.axis("off"); plt.title(arts[0]); plt.show()'''),
    ]
    return nb


if __name__ == "__main__":
    for name, nb in (("01_data_exploration.ipynb", exploration()), ("02_run_comparison.ipynb", comparison())):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbf.write(nb, HERE / name)
        print("wrote", HERE / name)
