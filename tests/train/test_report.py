"""history.csv and the learning curves DVC draws from it (declared in the finetune stage's plots)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from medvit.train.report import HISTORY_COLUMNS, write_history

ROOT = Path(__file__).resolve().parents[2]
HISTORY = [{"epoch": 1, "train/loss": 0.7, "val/loss": 0.69, "val/auroc_macro": 0.55, "val/ap_macro": 0.5, "lr": 1e-3},
           {"epoch": 2, "train/loss": 0.6, "val/loss": 0.65, "val/auroc_macro": 0.62, "val/ap_macro": 0.55, "lr": 5e-4}]


def test_history_has_loss_and_auroc_columns_per_epoch(tmp_path: Path) -> None:
    write_history(tmp_path / "history.csv", HISTORY)
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"epoch", "train/loss", "val/loss", "val/auroc_macro"} <= set(rows[0])
    assert [(r["epoch"], float(r["train/loss"]), float(r["val/loss"])) for r in rows] == [("1", 0.7, 0.69),
                                                                                          ("2", 0.6, 0.65)]


def test_dvc_draws_train_and_val_loss_and_val_auroc(tmp_path: Path) -> None:
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["finetune"]
    (plot,) = stage["plots"]
    props = plot["models/${item.domain}/history.csv"]
    assert props["x"] in HISTORY_COLUMNS and props["y"] == "val/auroc_macro"
    # Render through DVC itself, in a scratch project holding just this stage's plot definition.
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"finetune": {
        "matrix": {"domain": ["medical"]}, "cmd": "true", "plots": stage["plots"]}}}))
    template = tmp_path / props["template"]
    template.parent.mkdir(parents=True)
    shutil.copy(ROOT / props["template"], template)
    write_history(tmp_path / "models" / "medical" / "history.csv", HISTORY)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    out = subprocess.run([*dvc, "plots", "show", "--json"], cwd=tmp_path, check=True, capture_output=True, text=True)
    (rendered,) = json.loads(out.stdout)["data"]["models/medical/history.csv"]
    spec = rendered["content"]
    assert [float(d["val/auroc_macro"]) for d in spec["data"]["values"]] == [0.55, 0.62]
    loss_panel, auroc_panel = spec["hconcat"]
    assert loss_panel["transform"][0]["fold"] == ["train/loss", "val/loss"]
    assert auroc_panel["encoding"]["y"]["field"] == "val/auroc_macro"
    assert auroc_panel["encoding"]["x"]["field"] == loss_panel["encoding"]["x"]["field"] == "epoch"
