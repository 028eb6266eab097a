"""The console script's help and error handling."""

import subprocess
import sys
from pathlib import Path

import pytest

from medvit.cli import main
from medvit.stages import STAGES

REPO = Path(__file__).resolve().parents[1]


def test_top_level_help_lists_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in (*STAGES, "doctor", "review"):
        assert cmd in out


@pytest.mark.parametrize("stage", STAGES)
def test_stage_help(stage: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([stage, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--domain" in out and "--params" in out


def test_bad_params_is_a_clear_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("ingest:\n  wokers: 2\n")
    code = main(["ingest", "--domain", "medical", "--params", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert "ingest.wokers" in err and "did you mean 'workers'" in err
    assert "Traceback" not in err


def test_console_script_and_pipeline_script_share_the_cli() -> None:
    out = subprocess.run([sys.executable, str(REPO / "pipelines" / "ingest.py"), "--help"],
                         capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "medvit ingest" in out and "--raw" in out


def test_doctor_reports_decoders_and_tracking(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--params", str(REPO / "params.yaml")]) == 0
    out = capsys.readouterr().out
    assert "JPEG 2000" in out and "tracking URI" in out and "threads:" in out


def test_stage_records_the_params_it_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medvit.config import RECORD_ENV, record_reads

    log = tmp_path / "reads.tsv"
    params = tmp_path / "params.yaml"
    params.write_text("sample:\n  satellite: {n_scenes: 1, scene_size: 64, tile_size: 32, stride: 32}\n")
    monkeypatch.setenv(RECORD_ENV, str(log))
    try:
        assert main(["sample", "--domain", "satellite", "--params", str(params), "--out", str(tmp_path / "raw")]) == 0
    finally:
        monkeypatch.delenv(RECORD_ENV)
        record_reads("", "")  # switch recording off for the rest of this process
    rows = {tuple(line.split("\t")) for line in log.read_text().splitlines()}
    assert ("sample", "satellite", "sample.seed") in rows and ("sample", "satellite", "sample.satellite.n_scenes") in rows
    assert not [r for r in rows if r[2].startswith(("sample.medical", "ingest", "finetune"))]
