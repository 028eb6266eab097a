"""A training run killed with SIGKILL mid-epoch and re-run resumes from its checkpoint and ends bitwise identical.

The killed run is this file run as a script in its own process: its ``on_step``
callback SIGKILLs the process after a given optimizer update, so nothing in
the training code knows about the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file

from medvit.config import FinetuneConfig
from medvit.data.cache import read_stats
from medvit.data.manifest import read_manifest
from medvit.train.checkpoint import BEST, LAST
from medvit.train.distributed import DistInfo
from medvit.train.loop import FitResult, fit
from medvit.train.setup import build_training

IDENTITY = {"params_hash": "p1", "data_hash": "d1", "world_size": 1}


def run_fit(cache: str | Path, cfg_json: str, ckpt_dir: str | Path, kill_at_step: int = 0) -> FitResult:
    """Build the tiny training from ``cache`` and fit; with ``kill_at_step``, SIGKILL this process after that update."""
    cfg = FinetuneConfig.model_validate_json(cfg_json)
    info = DistInfo()
    s = build_training(cfg, "medical", Path(cache), read_manifest(cache), read_stats(cache), info)
    on_step: Callable[[int], None] | None = None
    if kill_at_step:
        def on_step(step: int) -> None:
            if step == kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)
    return fit(s.model, s.train, s.val, cfg, s.loss, info=info, ckpt_dir=ckpt_dir, identity=IDENTITY,
               on_step=on_step)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(tiny_cache, tiny_cfg, tmp_path: Path) -> None:
    cache = tiny_cache()
    # EMA on, so its state must survive the kill too; 28 train images, batch 8: 4 optimizer updates per epoch.
    cfg_json = tiny_cfg(epochs=2, ema_decay=0.5).model_dump_json()
    ref = run_fit(cache, cfg_json, tmp_path / "ref")

    ckpt = tmp_path / "killed"
    # Killed mid-epoch 2, after update 6; epoch 1's checkpoint is on disk.
    proc = subprocess.run([sys.executable, __file__, str(cache), cfg_json, str(ckpt), "6"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    killed = torch.load(ckpt / LAST, weights_only=True)
    assert killed["epoch"] == 1 and killed["step"] == 4 and killed["ema"] is not None

    resumed = run_fit(cache, cfg_json, ckpt)
    assert resumed.resumed_from == 1 and any("resuming from" in n and "after epoch 1" in n for n in resumed.notes)
    assert resumed.steps == ref.steps == 8
    assert resumed.history == ref.history
    ref_last = torch.load(tmp_path / "ref" / LAST, weights_only=True)
    res_last = torch.load(ckpt / LAST, weights_only=True)
    for part in ("model", "ema"):
        assert ref_last[part].keys() == res_last[part].keys()
        for k in ref_last[part]:
            assert torch.equal(ref_last[part][k], res_last[part][k]), (part, k)
    assert ref_last["scheduler"] == res_last["scheduler"]
    ref_best, res_best = load_file(tmp_path / "ref" / BEST), load_file(ckpt / BEST)
    assert ref_best.keys() == res_best.keys() == ref.best_state.keys()
    for k in ref_best:
        assert torch.equal(ref_best[k], res_best[k]), k
        assert torch.equal(ref.best_state[k], resumed.best_state[k]), k


if __name__ == "__main__":  # the run the test kills, in its own process
    run_fit(sys.argv[1], sys.argv[2], sys.argv[3], kill_at_step=int(sys.argv[4]))
