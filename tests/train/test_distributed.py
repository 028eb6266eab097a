"""DDP: torchrun with 2 CPU processes (gloo) runs the same entry point; only rank 0 writes and logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medvit.data.manifest import read_manifest
from medvit.data.scores import read_scores


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_torchrun_two_cpu_processes(tiny_cache, tiny_params, tmp_path: Path) -> None:
    cache, params, out = tiny_cache(), tiny_params(epochs=1), tmp_path / "out"
    db = tmp_path / "mlflow.db"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "medvit.cli", "finetune", "--domain", "medical", "--cache", str(cache), "--out", str(out),
           "--params", str(params)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=220)
    assert proc.returncode == 0, proc.stderr[-4000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # 28 train images split over 2 ranks, batch 8: 2 optimizer steps per epoch (4 in one process).
    assert metrics["optimizer_steps"] == 2
    manifest = read_manifest(cache)
    for split in ("val", "test"):
        table = read_scores(out / "scores" / f"{split}.csv")
        assert list(table.ids) == manifest.split(split)["id"].tolist()  # gathered from both ranks, in order
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("medvit-medical").experiment_id])
    assert len(runs) == 1  # rank 1 never logs
    assert runs[0].info.run_id == metrics["run_id"]
