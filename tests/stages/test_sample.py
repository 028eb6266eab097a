"""`medvit sample`: the CLI writes the sample and prints a one-line summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvit.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # rasterio's own Affine use


def test_cli_writes_the_sample_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("sample:\n  satellite: {n_scenes: 1, scene_size: 64}\n")
    assert main(["sample", "--domain", "satellite", "--params", str(params), "--out", str(tmp_path / "sat")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("sample satellite: wrote 1 scenes")
    assert (tmp_path / "sat" / "tiles.csv").is_file() and len(list((tmp_path / "sat" / "scenes").glob("*.tif"))) == 1
