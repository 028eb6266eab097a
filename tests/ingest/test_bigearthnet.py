"""BigEarthNet v1 / v2 through the ingest stage, on layouts written as the data sets document them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from ingest_inputs import ingest_cfg
from patch_inputs import band_values, bigearthnet_v1, bigearthnet_v2, patch_name

from medvit.data.cache import ShardReader, read_stats
from medvit.data.manifest import read_manifest
from medvit.errors import UserError
from medvit.ingest import ingest
from medvit.ingest.bigearthnet import BEN19, CLC43, TO_BEN19, month_of, tile_of

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

V1_LABELS = {
    patch_name(0, 0, 0): ["Coniferous forest", "Mixed forest"],
    patch_name(0, 0, 1): ["Non-irrigated arable land", "Airports"],
    patch_name(0, 1, 0): ["Rice fields"],
    patch_name(1, 0, 0, month=8): ["Coniferous forest", "Water bodies"],
    patch_name(1, 2, 3, month=8): ["Mixed forest", "Sea and ocean"],
    patch_name(2, 4, 4, month=1): ["Water courses", "Non-irrigated arable land"],
    patch_name(2, 4, 5, month=1): ["Coniferous forest"],
    patch_name(3, 0, 7, month=12): ["Mixed forest", "Water bodies"],
    patch_name(3, 1, 7, month=12): ["Rice fields", "Coniferous forest"],
}


def run(tmp_path: Path, raw: Path, labels: Path, **satellite: object) -> tuple[Path, dict]:
    _, cfg = ingest_cfg(tmp_path, satellite={"format": "bigearthnet-v1", **satellite})
    out = tmp_path / "cache"
    return out, ingest("satellite", raw, labels, out, cfg)


def test_v1_pixels_labels_groups_and_rejects(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    names = bigearthnet_v1(raw, V1_LABELS)
    missing, broken, unlabelled = names[1], names[4], names[6]
    (raw / missing / f"{missing}_B03.tif").unlink()
    (raw / broken / f"{broken}_B08.tif").write_bytes(b"II*\x00 not really a tiff")
    (raw / unlabelled / f"{unlabelled}_labels_metadata.json").unlink()
    out, report = run(tmp_path, raw, raw, bands=["B02", "B03", "B04", "B08"])

    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert rejects == {missing: f"missing band: B03 (no {missing}_B03.tif)",
                       broken: rejects[broken], unlabelled: rejects[unlabelled]}
    assert rejects[broken].startswith("not a raster: B08")
    assert rejects[unlabelled].startswith("no labels")
    assert report["n_input"] == 9 == report["n_ingested"] + report["n_rejected"] and report["n_rejected"] == 3
    assert read_stats(out)["channels"] == ["B02", "B03", "B04", "B08"] and read_stats(out)["size"] == [120, 120]

    manifest = read_manifest(out)
    frame = manifest.frame.set_index("id")
    kept = [n for n in names if n not in rejects]
    assert sorted(frame.index) == sorted(kept)
    # Label names: the CORINE classes present in the kept and rejected-for-pixels patches, in CLC43 order.
    assert list(manifest.label_names) == [c for c in CLC43 if any(c in v for n, v in V1_LABELS.items()
                                                                    if n != unlabelled)]
    reader = ShardReader(out)
    for name in kept:
        row = frame.loc[name]
        assert row["source"] == name and row["group"] == tile_of(name) == row["tile"]
        assert int(row["month"]) == month_of(name) and row["crs"] == "EPSG:32634"
        y = manifest.frame.set_index("id").loc[name, [f"label:{c}" for c in manifest.label_names]].astype(float)
        assert {c for c, v in zip(manifest.label_names, y) if v == 1} == set(V1_LABELS[name])
        image = np.asarray(reader.get(int(row["shard"]), int(row["index"])))
        i = names.index(name)
        for c, band in enumerate(["B02", "B03", "B04", "B08"]):
            np.testing.assert_allclose(image[c], band_values(i, band) * np.float32(1e-4), rtol=1e-6)
    # The tile is the group: no tile in two splits.
    assert (manifest.frame.groupby("group")["split"].nunique() == 1).all()
    assert month_of(names[-1]) == 12 and tile_of(names[0]) == names[0].rsplit("_", 2)[0]


def test_v1_coarse_bands_are_resampled_bilinearly_onto_the_finest_grid(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    names = bigearthnet_v1(raw, dict(list(V1_LABELS.items())[:4]))
    out, report = run(tmp_path, raw, raw, bands=["B8A", "B02", "B01"], max_nodata_fraction=0.5)
    assert report["n_rejected"] == 0
    frame = read_manifest(out).frame.set_index("id")
    row = frame.loc[names[2]]
    image = np.asarray(ShardReader(out).get(int(row["shard"]), int(row["index"])))
    assert image.shape == (3, 120, 120)
    # Pixel centres: 10 m column j sits at coarse column (j + 0.5) / k - 0.5 of a k-times coarser band,
    # and the ramp is linear in the column, so bilinear resampling must give it exactly (away from the edges).
    for c, (band, k) in enumerate([("B8A", 2), ("B02", 1), ("B01", 6)]):
        coarse = band_values(2, band)[0].astype(np.float64)
        j = np.arange(k, 120 - k)
        expect = np.interp((j + 0.5) / k - 0.5, np.arange(coarse.size), coarse) * 1e-4
        np.testing.assert_allclose(image[c][:, j], np.broadcast_to(expect, (120, j.size)), rtol=1e-5)


def test_v1_nineteen_class_nomenclature(tmp_path: Path) -> None:
    assert len(CLC43) == 43 and len(BEN19) == 19 and set(TO_BEN19) <= set(CLC43) and len(TO_BEN19) == 32
    raw = tmp_path / "raw"
    bigearthnet_v1(raw, V1_LABELS)
    out, _ = run(tmp_path, raw, raw, bands=["B02"], nomenclature="bigearthnet-19")
    manifest = read_manifest(out)
    assert list(manifest.label_names) == ["Arable land", "Coniferous forest", "Mixed forest", "Inland waters",
                                          "Marine waters"]
    frame = manifest.frame.set_index("id")
    # Non-irrigated arable land -> Arable land; Airports has no 19-class counterpart and is dropped.
    airport = frame.loc[patch_name(0, 0, 1)]
    assert airport["label:Arable land"] == 1 and airport.filter(like="label:").astype(float).sum() == 1
    assert frame.loc[patch_name(0, 1, 0), "label:Arable land"] == 1  # Rice fields
    assert frame.loc[patch_name(1, 2, 3, month=8), "label:Marine waters"] == 1  # Sea and ocean


def test_v1_official_split(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    names = bigearthnet_v1(raw, V1_LABELS)
    official = {"train": names[:5], "val": names[5:7], "test": names[7:8]}  # names[8]: in no split
    for split, listed in official.items():
        (raw / f"{split}.csv").write_text("".join(f"{n}\n" for n in listed))
    out, report = run(tmp_path, raw, raw, bands=["B02"], use_official_split=True)
    frame = read_manifest(out).frame.set_index("id")
    assert {n: frame.loc[n, "split"] for n in names[:8]} == {n: s for s, ns in official.items() for n in ns}
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert rejects == {names[8]: "not in the official split: listed in none of the split files"}
    assert report["split_source"] == "official" and report["splits"] == {"train": 5, "val": 2, "test": 1}
    assert report["files_outside_patches"] == 3   # the split lists: counted, not inputs
    (raw / "val.csv").unlink()
    with pytest.raises(UserError, match=r"val\.csv: official split file not found"):
        run(tmp_path, raw, raw, bands=["B02"], use_official_split=True)


def test_v1_band_selection_by_index_and_unknown_band(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    bigearthnet_v1(raw, dict(list(V1_LABELS.items())[:3]))
    out, _ = run(tmp_path, raw, raw, bands=[2, 3, 4, 9])
    assert read_stats(out)["channels"] == ["B02", "B03", "B04", "B8A"]
    with pytest.raises(UserError, match=r"bigearthnet-v1 has no band 'B10'"):
        run(tmp_path, raw, raw, bands=["B02", "B10"])
    (raw / "bad").mkdir()
    (raw / "bad" / "bad_labels_metadata.json").write_text(json.dumps({"labels": ["Lava fields"]}))
    with pytest.raises(UserError, match=r"bad_labels_metadata\.json: 'labels' holds \['Lava fields'\]"):
        run(tmp_path, raw, raw, bands=["B02"])


V2_ROWS = [
    {"patch_id": patch_name(t, r, c, month=m, v2=True), "labels": labels, "split": split, "country": country}
    for t, r, c, m, labels, split, country in [
        (0, 26, 57, 6, ["Arable land", "Inland waters"], "train", "Finland"),
        (0, 26, 58, 6, ["Coniferous forest"], "train", "Finland"),
        (1, 3, 4, 7, ["Mixed forest", "Coniferous forest"], "train", "Serbia"),
        (1, 3, 5, 7, ["Arable land"], "validation", "Serbia"),
        (2, 0, 0, 9, ["Inland waters", "Mixed forest"], "validation", "Austria"),
        (3, 9, 9, 11, ["Coniferous forest", "Arable land"], "test", "Portugal"),
        (4, 1, 1, 2, ["Mixed forest"], "test", "Ireland"),
    ]]


def test_v2_parquet_official_split_country_and_rejects(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    parquet = bigearthnet_v2(raw, V2_ROWS)
    stray = V2_ROWS[0]["patch_id"].rsplit("_", 2)[0] + "_30_30"       # on disk, not in the metadata
    from patch_inputs import write_patch
    write_patch(raw / stray.rsplit("_", 2)[0] / stray, stray, 40)
    listed_only = {**V2_ROWS[1], "patch_id": V2_ROWS[1]["patch_id"][:-2] + "99"}  # in the metadata, not on disk
    pd.DataFrame([*V2_ROWS, listed_only]).to_parquet(parquet)
    gone = V2_ROWS[2]["patch_id"]
    (next(raw.rglob(f"{gone}_B04.tif"))).unlink()
    _, cfg = ingest_cfg(tmp_path, satellite={"format": "bigearthnet-v2", "bands": ["B04", "B03", "B02"],
                                             "use_official_split": True})
    out = tmp_path / "cache"
    report = ingest("satellite", raw, parquet, out, cfg)
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    key = {r["patch_id"]: f"{r['patch_id'].rsplit('_', 2)[0]}/{r['patch_id']}" for r in V2_ROWS}
    stray_key = f"{stray.rsplit('_', 2)[0]}/{stray}"
    assert rejects == {stray_key: "no labels: not listed in metadata.parquet",
                       key[gone]: f"missing band: B04 (no {gone}_B04.tif)"}
    assert report["n_input"] == 8 and report["n_ingested"] == 6 and report["labels_without_images"] == 1
    manifest = read_manifest(out)
    assert list(manifest.label_names) == ["Arable land", "Coniferous forest", "Mixed forest", "Inland waters"]
    frame = manifest.frame.set_index("id")
    split_of = {"train": "train", "validation": "val", "test": "test"}
    for r in V2_ROWS:
        if r["patch_id"] == gone:
            continue
        row = frame.loc[r["patch_id"]]
        assert row["split"] == split_of[r["split"]] and row["country"] == r["country"]
        assert row["source"] == key[r["patch_id"]] and row["group"] == r["patch_id"].rsplit("_", 2)[0]
        assert {n for n in manifest.label_names if row[f"label:{n}"] == 1} == set(r["labels"])
    assert read_stats(out)["channels"] == ["B04", "B03", "B02"]


def test_v2_bad_metadata_is_fatal(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    parquet = bigearthnet_v2(raw, V2_ROWS[:3])
    _, cfg = ingest_cfg(tmp_path, satellite={"format": "bigearthnet-v2", "bands": ["B02"]})
    pd.DataFrame({"patch_id": pd.Series([], dtype=str), "labels": pd.Series([], dtype=object)}).to_parquet(parquet)
    with pytest.raises(UserError, match=r"metadata\.parquet: the metadata table has no rows"):
        ingest("satellite", raw, parquet, tmp_path / "cache", cfg)
    rows = [dict(r) for r in V2_ROWS[:3]]
    rows[1]["labels"] = ["Coniferous forest", "Lava fields"]
    pd.DataFrame(rows).to_parquet(parquet)
    with pytest.raises(UserError, match=r"rows 3 \(row 2 = first row\) have labels outside"):
        ingest("satellite", raw, parquet, tmp_path / "cache", cfg)
    pd.DataFrame(rows).drop(columns=["labels"]).to_parquet(parquet)
    with pytest.raises(UserError, match=r"missing column\(s\) \['labels'\]"):
        ingest("satellite", raw, parquet, tmp_path / "cache", cfg)
    assert not (tmp_path / "cache" / "manifest.csv").exists()


def test_cache_is_identical_for_one_and_two_workers(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    bigearthnet_v1(raw, V1_LABELS)
    caches = []
    for workers in (1, 2):
        _, cfg = ingest_cfg(tmp_path, workers=workers, shard_size=4,
                            satellite={"format": "bigearthnet-v1", "bands": ["B02", "B05"]})
        out = tmp_path / f"cache{workers}"
        ingest("satellite", raw, raw, out, cfg)
        caches.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*"))
                       if p.is_file() and p.name != "report.json"})
    assert caches[0] == caches[1] and len([p for p in caches[0] if p.parts[0] == "shards"]) == 3


def test_nodata_pixels_are_masked_and_filled_with_the_train_mean(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    names = bigearthnet_v1(raw, V1_LABELS)
    name = names[3]
    path = raw / name / f"{name}_B05.tif"            # a 20 m band: its nodata spreads to the 10 m grid
    with rasterio.open(path, "r+") as ds:
        data = ds.read()
        data[:, :10, :10] = 0
        ds.write(data)
        ds.nodata = 0
    out, report = run(tmp_path, raw, raw, bands=["B02", "B05"])
    assert report["n_rejected"] == 0
    frame = read_manifest(out).frame.set_index("id")
    row = frame.loc[name]
    # 10 x 10 px at 20 m = 20 x 20 px at 10 m, plus the bilinear fringe of one 10 m pixel.
    assert float(row["nodata_fraction"]) == pytest.approx(21 * 21 / 120**2)
    assert (frame.drop(index=name)["nodata_fraction"] == 0).all()
    image = np.asarray(ShardReader(out).get(int(row["shard"]), int(row["index"])))
    mean = np.asarray(read_stats(out)["mean"], np.float32)
    np.testing.assert_allclose(image[1, :21, :21], mean[1], rtol=1e-6)   # filled: normalises to 0
    np.testing.assert_allclose(image[0], band_values(3, "B02") * np.float32(1e-4), rtol=1e-6)  # B02 untouched
    assert image[1, 21:, 21:].min() > 0.1


def test_v2_through_the_cli_with_the_default_labels_path(tmp_path: Path) -> None:
    from medvit.cli import main

    raw = tmp_path / "raw"
    bigearthnet_v2(raw, V2_ROWS)
    params, _ = ingest_cfg(tmp_path, satellite={"format": "bigearthnet-v2", "bands": ["B8A", "B11"]})
    out = tmp_path / "cache"
    assert main(["ingest", "--domain", "satellite", "--params", str(params), "--raw", str(raw),
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_input"] == report["n_ingested"] == len(V2_ROWS) and report["format"] == "bigearthnet-v2"
    assert read_stats(out)["size"] == [60, 60]  # 20 m bands only: the 60 x 60 grid
    frame = read_manifest(out).frame
    assert report["split_source"] == "ingest" and (frame.groupby("group")["split"].nunique() == 1).all()
