"""The staging folder: an earlier sample is replaced wholesale, a user's own folder is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvit.config import SampleMedical
from medvit.errors import UserError
from medvit.sample.medical import write_medical


def test_output_is_replaced_but_foreign_folders_are_refused(tmp_path: Path) -> None:
    cfg = SampleMedical(n_patients=2, images_per_patient=1, image_size=32, burned_in=0)
    out = tmp_path / "medical"
    write_medical(out, cfg, seed=0)
    (out / "images" / "stale.dcm").write_bytes(b"x")
    write_medical(out, cfg, seed=0)  # a re-run replaces an earlier sample wholesale
    assert sorted(p.name for p in (out / "images").iterdir()) == ["img_00000.dcm", "img_00001.dcm"]
    assert [p.name for p in tmp_path.iterdir()] == ["medical"]  # no staging folders left behind
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "scan.dcm").write_bytes(b"precious")
    with pytest.raises(UserError, match="did not write"):
        write_medical(mine, cfg, seed=0)
    assert (mine / "scan.dcm").read_bytes() == b"precious"
