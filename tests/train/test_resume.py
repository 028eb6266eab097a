"""A finetune killed with SIGKILL and re-run resumes from its checkpoint and ends bitwise identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medvit.cli import main
from medvit.train.checkpoint import LAST
from medvit.train.loop import STALL_ENV


def _cmd(cache: Path, out: Path, params: Path) -> list[str]:
    return [sys.executable, "-m", "medvit.cli", "finetune", "--domain", "medical", "--cache", str(cache),
            "--out", str(out), "--params", str(params)]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "MEDVIT_TRACKING": "off", **extra}  # MLflow is covered by tests/stages


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(tiny_cache, tiny_params, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache, params = tiny_cache(), tiny_params(epochs=2)
    # Uninterrupted reference (28 train images, batch 8: 4 optimizer steps per epoch).
    monkeypatch.setenv("MEDVIT_TRACKING", "off")
    assert main(["finetune", "--domain", "medical", "--cache", str(cache), "--out", str(tmp_path / "ref"),
                 "--params", str(params)]) == 0

    out = tmp_path / "killed"
    # Stall mid-epoch 2 (after step 6; epoch 1's checkpoint is on disk), then kill -9.
    proc = subprocess.Popen(_cmd(cache, out, params), env=_env(tmp_path, **{STALL_ENV: "6"}),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        for line in proc.stdout:  # type: ignore[union-attr]
            if "stalling" in line or time.monotonic() > deadline:
                break
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    ckpt = torch.load(out / "checkpoint" / LAST, weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["step"] == 4
    assert not (out / "model.safetensors").exists()

    rerun = subprocess.run(_cmd(cache, out, params), env=_env(tmp_path), capture_output=True, text=True,
                           cwd=tmp_path, timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming from" in rerun.stderr and "after epoch 1" in rerun.stderr

    ref_last = torch.load(tmp_path / "ref" / "checkpoint" / LAST, weights_only=True)["model"]
    res_last = torch.load(out / "checkpoint" / LAST, weights_only=True)["model"]
    for k in ref_last:
        assert torch.equal(ref_last[k], res_last[k]), k
    ref_best, res_best = load_file(tmp_path / "ref" / "model.safetensors"), load_file(out / "model.safetensors")
    assert ref_best.keys() == res_best.keys()
    for k in ref_best:
        assert torch.equal(ref_best[k], res_best[k]), k
    assert (out / "history.csv").read_text() == (tmp_path / "ref" / "history.csv").read_text()
