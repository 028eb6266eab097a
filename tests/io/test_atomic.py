"""Atomic writes: readable like a plain open(), and nothing half-written on failure."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from medvit.io.atomic import write_json_atomic
from medvit.data.scores import write_scores
from medvit.io.atomic import atomic_open, atomic_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_get_the_mode_of_a_plain_open_not_mkstemps_0600(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    expected = _mode(tmp_path / "plain")
    assert expected != 0o600, "this test needs a umask that is not 077"
    write_json_atomic(tmp_path / "a" / "report.json", {"n": 1})
    write_scores(tmp_path / "scores.csv", ["x"], np.array([[0.5]]), ["l"])
    with atomic_path(tmp_path / "w.bin") as tmp:
        tmp.write_bytes(b"abc")
    for p in (tmp_path / "a" / "report.json", tmp_path / "scores.csv", tmp_path / "w.bin"):
        assert _mode(p) == expected, (p, oct(_mode(p)))
    assert json.loads((tmp_path / "a" / "report.json").read_text()) == {"n": 1}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_atomic_open_refuses_append_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x", "a"):
        pass
