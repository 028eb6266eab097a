"""write_sample: one entry point for both domains, byte-identical output for the same params and seed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from medvit.config import parse_params
from medvit.errors import UserError
from medvit.sample import write_sample

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # rasterio's own Affine use
PARAMS = parse_params({"sample": {"medical": {"n_patients": 4, "images_per_patient": 2, "image_size": 48},
                                  "satellite": {"n_scenes": 2, "scene_size": 128}}})


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("domain", ["medical", "satellite"])
def test_generation_is_deterministic(domain: str, tmp_path: Path) -> None:
    first = write_sample(domain, tmp_path / "a", PARAMS.sample)
    write_sample(domain, tmp_path / "b", PARAMS.sample)
    digest = _digest(tmp_path / "a")
    assert len(digest) > first.n_files and digest == _digest(tmp_path / "b")  # files plus the labels CSV
    other = PARAMS.model_copy(update={"sample": PARAMS.sample.model_copy(update={"seed": 1})})
    write_sample(domain, tmp_path / "c", other.sample)
    assert _digest(tmp_path / "c").keys() == digest.keys() and _digest(tmp_path / "c") != digest


def test_summary_names_the_domain_units(tmp_path: Path) -> None:
    medical = str(write_sample("medical", tmp_path / "m", PARAMS.sample))
    satellite = str(write_sample("satellite", tmp_path / "s", PARAMS.sample))
    assert medical.startswith("sample medical: wrote 8 DICOM files (4 patients; ")
    assert satellite.startswith("sample satellite: wrote 2 scenes (2 places; ")
    assert f"to {tmp_path / 'm'} in " in medical


def test_unknown_domain_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="use medical or satellite"):
        write_sample("radar", tmp_path / "r", PARAMS.sample)
    assert not (tmp_path / "r").exists()
