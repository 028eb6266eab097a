"""EuroSAT (13-band 64 x 64 GeoTIFFs, one folder per class) through the ingest stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ingest_inputs import check_conservation, ingest_cfg
from patch_inputs import ORIGIN, eurosat, eurosat_values, write_tif

from medvit.data.cache import ShardReader, read_stats
from medvit.data.manifest import read_manifest
from medvit.errors import UserError
from medvit.ingest import ingest
from medvit.ingest.bands import EUROSAT_BANDS

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

CLASSES = {"AnnualCrop": 4, "Forest": 4, "SeaLake": 4}


def test_eurosat_pixels_single_label_and_rejects(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    keys = eurosat(raw, CLASSES)
    # A 12-band file (B8A missing), a file outside any class folder, a file that is not a raster, a wrong size.
    short = raw / "Forest" / "Forest_9.tif"
    write_tif(short, eurosat_values(50)[:12], ORIGIN[0], ORIGIN[1], 10.0)
    loose = raw / "loose.tif"
    write_tif(loose, eurosat_values(51), ORIGIN[0], ORIGIN[1], 10.0)
    (raw / "SeaLake" / "SeaLake_9.tif").write_bytes(b"\x00" * 100)
    (raw / "licence").mkdir()
    (raw / "licence" / "LICENSE.txt").write_text("MIT")   # no images beside it: not a class
    write_tif(raw / "SeaLake" / "SeaLake_8.tif", eurosat_values(52)[:, :32], ORIGIN[0], ORIGIN[1], 10.0)
    _, cfg = ingest_cfg(tmp_path, satellite={"format": "eurosat", "bands": ["B04", "B03", "B02", "B8A"]})
    out = tmp_path / "cache"
    report = ingest("satellite", raw, raw, out, cfg)

    all_keys = [*keys, "Forest/Forest_9.tif", "loose.tif", "SeaLake/SeaLake_9.tif", "SeaLake/SeaLake_8.tif",
                "licence/LICENSE.txt"]
    check_conservation(all_keys, out)
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert rejects["Forest/Forest_9.tif"] == "missing band: B8A (file has 12 band(s))"
    assert rejects["loose.tif"] == rejects["licence/LICENSE.txt"] == "no labels: not in a class folder"
    assert rejects["SeaLake/SeaLake_9.tif"].startswith("not a raster")
    assert rejects["SeaLake/SeaLake_8.tif"].startswith("unexpected size: 32x64 px")
    assert report["n_ingested"] == 12
    assert read_stats(out)["channels"] == ["B04", "B03", "B02", "B8A"] and read_stats(out)["size"] == [64, 64]

    manifest = read_manifest(out)
    assert manifest.label_names == ("AnnualCrop", "Forest", "SeaLake")
    y = manifest.labels()
    assert (y.sum(1) == 1).all()                                  # single label -> one-hot
    frame = manifest.frame
    reader = ShardReader(out)
    file_pos = [EUROSAT_BANDS.index(b) for b in ("B04", "B03", "B02", "B8A")]
    assert file_pos[-1] == 12                                     # B8A is the last band in the file
    for i, key in enumerate(keys):
        row = frame.set_index("source").loc[key]
        cls = key.split("/")[0]
        assert row["class"] == cls and row[f"label:{cls}"] == 1 and row["group"] == row["id"] == Path(key).stem
        image = np.asarray(reader.get(int(row["shard"]), int(row["index"])))
        expect = eurosat_values(i)[file_pos].astype(np.float32) * np.float32(1e-4)
        np.testing.assert_allclose(image, expect, rtol=1e-6)


def test_eurosat_bands_by_index_follow_the_file_order(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    eurosat(raw, CLASSES)
    _, cfg = ingest_cfg(tmp_path, satellite={"format": "eurosat", "bands": [13, 10, 2]})
    out = tmp_path / "cache"
    ingest("satellite", raw, raw, out, cfg)
    assert read_stats(out)["channels"] == ["B8A", "B10", "B02"]
    with pytest.raises(UserError, match=r"index 14 is out of range for eurosat, which has 13 bands"):
        ingest("satellite", raw, raw, out, ingest_cfg(tmp_path, satellite={"format": "eurosat", "bands": [14]})[1])


def test_class_folders_of_jpegs_name_the_rgb_release(tmp_path: Path) -> None:
    raw = tmp_path / "EuroSAT_RGB"
    for cls in ("AnnualCrop", "Forest"):
        (raw / cls).mkdir(parents=True)
        (raw / cls / f"{cls}_1.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    _, cfg = ingest_cfg(tmp_path, satellite={"format": "eurosat", "bands": ["B04"]})
    with pytest.raises(UserError, match=r"EuroSAT_RGB: no class folder holding \.tif images.*use the 13-band"):
        ingest("satellite", raw, raw, tmp_path / "cache", cfg)
    assert not (tmp_path / "cache" / "manifest.csv").exists()
