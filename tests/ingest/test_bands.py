"""Band selection by name or 1-based index: params validation, data-set band orders, scene band descriptions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from ingest_inputs import SAT, ingest_cfg, satellite_raw

from medvit.config import ConfigError, parse_params
from medvit.data.cache import ShardReader, read_stats
from medvit.data.manifest import read_manifest
from medvit.errors import UserError
from medvit.ingest import ingest
from medvit.ingest.bands import BIGEARTHNET_BANDS, EUROSAT_BANDS, resolve_bands
from medvit.ingest.registry import format_name, source_class
from medvit.io.geotiff import RasterReject, band_indexes, band_name

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def test_band_names_are_canonical_sentinel2() -> None:
    assert [band_name(n) for n in ("b2", "B02", " B8a ", "B12", "B8", "red", "B")] == \
        ["B02", "B02", "B8A", "B12", "B08", None, None]
    assert resolve_bands(["B2", "b8a", "B12"], BIGEARTHNET_BANDS, "bigearthnet-v1") == ("B02", "B8A", "B12")
    assert resolve_bands([9, 10], BIGEARTHNET_BANDS, "bigearthnet-v1") == ("B8A", "B09")
    assert resolve_bands([9, 13], EUROSAT_BANDS, "eurosat") == ("B09", "B8A")
    with pytest.raises(UserError, match=r"selects a band twice"):
        resolve_bands(["B2", "B02"], BIGEARTHNET_BANDS, "bigearthnet-v1")


def test_params_take_indexes_or_names_never_a_mix() -> None:
    sat = parse_params({"ingest": {"satellite": {"format": "eurosat", "bands": ["B04", "B8A"]}}}).ingest.satellite
    assert sat.bands == ("B04", "B8A") and sat.channel_names == ("B04", "B8A")
    assert parse_params({}).ingest.satellite.channel_names == ("B2", "B3", "B4", "B8")
    for bad, match in [({"bands": [1, "B02"]}, "not a mix"), ({"bands": [0, 1], "band_names": ["a", "b"]},
                                                              "1-based"),
                       ({"bands": [1, 2]}, "same length"), ({"bands": []}, "at least one"),
                       ({"format": "landsat"}, "format"),
                       ({"format": "eurosat", "bands": ["B02"], "use_official_split": True}, "bigearthnet"),
                       ({"nomenclature": "bigearthnet-19"}, "bigearthnet-v1/-v2 formats only")]:
        with pytest.raises(ConfigError, match=match):
            parse_params({"ingest": {"satellite": bad}})


def test_the_registry_reads_the_satellite_format_param() -> None:
    for fmt, cls in [("scenes", "ScenesSource"), ("bigearthnet-v1", "BigEarthNetV1Source"),
                     ("bigearthnet-v2", "BigEarthNetV2Source"), ("eurosat", "EuroSatSource")]:
        cfg = parse_params({"ingest": {"satellite": {"format": fmt, "bands": ["B02"]}}}).ingest
        assert format_name("satellite", cfg) == fmt and source_class("satellite", cfg).__name__ == cls


def test_band_descriptions_resolve_names() -> None:
    assert band_indexes(("B8", "b2"), ("B2", "B3", "B4", "B8")) == (4, 1)
    assert band_indexes(("B2", "red"), ("B02", "Red", None)) == (1, 2)
    with pytest.raises(RasterReject, match=r"missing band: B11 \(file has 3 band\(s\) named B02, B03, B04\)"):
        band_indexes(("B02", "B11"), ("B02", "B03", "B04"))
    with pytest.raises(RasterReject, match=r"missing band: B02 \(file has 2 band\(s\), without band names\)"):
        band_indexes(("B02",), (None, None))


def test_scenes_select_bands_by_description(tmp_path: Path) -> None:
    raw = satellite_raw(tmp_path / "raw")
    for path in (raw / "scenes").glob("tile*.tif"):
        if path.stem != "tile5":  # tile5 keeps unnamed bands: rejected, naming the bands
            with rasterio.open(path, "r+") as ds:
                ds.descriptions = ("B2", "B3", "B4", "B8")
    caches = {}
    for name, bands in [("indexed", {"bands": [4, 1], "band_names": ["B08", "B2"]}),
                        ("named", {"bands": ["B08", "B2"]})]:
        _, cfg = ingest_cfg(tmp_path, satellite={**SAT, **bands})
        out = tmp_path / name
        ingest("satellite", raw, raw / "labels", out, cfg)
        caches[name] = out
    named, indexed = caches["named"], caches["indexed"]
    assert read_stats(named)["channels"] == ["B08", "B2"]
    rejects = dict(pd.read_csv(named / "rejects.csv").itertuples(index=False))
    assert rejects["scenes/tile5.tif"] == "missing band: B08, B2 (file has 4 band(s), without band names)"
    frame = read_manifest(named).frame.set_index("id")
    ref = read_manifest(indexed).frame.set_index("id")
    assert set(frame.index) == set(ref.index) - {i for i in ref.index if i.startswith("tile5_")}
    a, b = ShardReader(named), ShardReader(indexed)
    full = [cid for cid in frame.index if float(frame.loc[cid, "nodata_fraction"]) == 0]  # no train-mean fill
    assert len(full) > 40
    for cid in full:
        x = np.asarray(a.get(int(frame.loc[cid, "shard"]), int(frame.loc[cid, "index"])))
        y = np.asarray(b.get(int(ref.loc[cid, "shard"]), int(ref.loc[cid, "index"])))
        np.testing.assert_array_equal(x, y)
