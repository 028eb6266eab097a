"""The ingest stage end to end on small real DICOM / GeoTIFF inputs written here."""

from __future__ import annotations

import csv
import os
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import rasterio
import yaml
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from rasterio.transform import from_origin

from medvit.cli import main
from medvit.config import parse_params
from medvit.data import ingest as ingest_mod
from medvit.data.cache import ShardReader, read_stats
from medvit.data.dataset import CacheDataset
from medvit.data.ingest import ingest
from medvit.data.manifest import read_manifest
from medvit.deid import KEY_ENV, Pseudonymizer
from medvit.errors import UserError

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # rasterio's own Affine use

KEY = "test-deid-key"
FINDINGS = ("cardiomegaly", "effusion", "nodule")
PHI = ("PHIPID", "PHICSV", "ZZPLANTED", "PHIHOSPITAL", "PHIACCESSION", "PHICOMMENT", "PHIPRIVATE",
       "1.2.826.0.1.3680043.99999", "19991231")


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def _cfg(tmp_path: Path, **ingest: object) -> tuple[Path, object]:
    data = {"ingest": {"workers": 2, "shard_size": 8, "max_reject_fraction": 0.5,
                       "medical": {"image_size": 32}, **ingest}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, parse_params(data).ingest


def _dicom(path: Path, patient: int, image: int, *, photometric: str = "MONOCHROME2",
           burned_in: str = "NO") -> None:
    rng = np.random.default_rng(patient * 10 + image)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    uid = f"1.2.826.0.1.3680043.99999.{patient}.{image}"
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", uid
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.99999.{patient}"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.99999.{patient}.0"
    ds.PatientName = f"ZZPLANTED^NAME{patient}"
    ds.PatientID = f"PHIPID{patient:04d}"
    ds.PatientBirthDate = ds.StudyDate = "19991231"
    ds.InstitutionName = "PHIHOSPITAL"
    ds.AccessionNumber = f"PHIACCESSION{patient}"
    ds.ImageComments = "PHICOMMENT"
    ds.add_new(0x00091010, "LO", "PHIPRIVATE")
    ds.Modality, ds.ViewPosition, ds.BurnedInAnnotation = "DX", "PA", burned_in
    ds.Rows, ds.Columns = 48, 40
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = rng.integers(0, 4096, (48, 40)).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _medical_raw(root: Path, n_patients: int = 12) -> Path:
    """12 patients x 2 images (file names embed the patient id), plus files ingest must reject."""
    images = root / "images" / "site"
    images.mkdir(parents=True)
    rows = []
    for p in range(n_patients):
        for k in range(2):
            name = f"PHIPID{p:04d}_{k}.dcm"
            _dicom(images / name, p, k, photometric="MONOCHROME1" if k else "MONOCHROME2")
            labels = "|".join(f for j, f in enumerate(FINDINGS) if (p + k + j) % 3 == 0) or "No Finding"
            rows.append({"Image Index": name, "Finding Labels": labels, "Patient ID": f"PHICSV{p}"})
    _dicom(images / "burned.dcm", 99, 0, burned_in="YES")
    rows.append({"Image Index": "burned.dcm", "Finding Labels": "nodule", "Patient ID": "PHICSV99"})
    (images / "notes.txt").write_text("not an image")
    rows.append({"Image Index": "notes.txt", "Finding Labels": "No Finding", "Patient ID": "PHICSV98"})
    (images / "empty.dcm").write_bytes(b"")
    rows.append({"Image Index": "empty.dcm", "Finding Labels": "No Finding", "Patient ID": "PHICSV97"})
    _dicom(images / "unlabelled.dcm", 50, 0)
    _write_csv(root / "labels.csv", rows)
    return root


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _all_bytes(folder: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in folder.rglob("*") if p.is_file()]


def _check_conservation(raw_keys: list[str], out: Path) -> None:
    """Every input is in the manifest (>= 1 rows) XOR in rejects.csv; counts add up."""
    pseudo = Pseudonymizer(KEY.encode())
    manifest = pd.read_csv(out / "manifest.csv", dtype=str)
    rejects = pd.read_csv(out / "rejects.csv", dtype=str)
    report = json.loads((out / "report.json").read_text())
    candidates = {k: {k, f"pseudo:{pseudo.token('source', k)}"} for k in raw_keys}
    in_manifest = {k for k, c in candidates.items() if c & set(manifest["source"])}
    in_rejects = {k for k, c in candidates.items() if c & set(rejects["source"])}
    assert in_manifest | in_rejects == set(raw_keys)
    assert not in_manifest & in_rejects
    assert report["n_input"] == len(raw_keys) == report["n_ingested"] + report["n_rejected"]
    assert report["n_ingested"] == len(in_manifest) and report["n_rejected"] == len(rejects)
    assert report["n_samples"] == len(manifest) == sum(report["splits"].values())
    assert sum(report["rejects_by_reason"].values()) == report["n_rejected"]
    assert rejects["reason"].str.len().gt(0).all()


def test_cli_medical_end_to_end_deidentified(tmp_path: Path) -> None:
    raw = _medical_raw(tmp_path / "raw")
    params, _ = _cfg(tmp_path)
    out = tmp_path / "cache"
    (tmp_path / ".cache.ingest-killed" / "shards").mkdir(parents=True)  # left by a killed run
    assert main(["ingest", "--domain", "medical", "--params", str(params), "--raw", str(raw),
                 "--out", str(out)]) == 0

    for path, data in _all_bytes(out):  # no planted PHI in any byte written, incl. the CSV's Patient ID
        for phi in PHI:
            assert phi.encode() not in data, (path.name, phi)
    assert not list(tmp_path.glob(".cache.ingest-*")), "temporary folder left behind"

    report = json.loads((out / "report.json").read_text())
    keys = [p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file() and p.name != "labels.csv"]
    _check_conservation(keys, out)
    assert report["n_ingested"] == 24 and report["deid"]["key_source"] == "env"
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert rejects["images/site/burned.dcm"].startswith("burned-in annotation")
    assert rejects["images/site/notes.txt"] == "not DICOM"
    assert rejects["images/site/empty.dcm"] == "empty file"
    assert rejects["images/site/unlabelled.dcm"].startswith("no labels")

    manifest = read_manifest(out)
    frame = manifest.frame
    assert manifest.label_names == FINDINGS
    assert frame["source"].str.startswith("pseudo:").all()  # the file names embed patient ids
    assert frame["id"].str.fullmatch(r"S[0-9a-f]{16}").all() and frame["id"].is_unique
    pseudo = Pseudonymizer(KEY.encode())
    assert set(frame["group"]) == {pseudo.patient(f"PHICSV{p}") for p in range(12)}
    assert frame.groupby("group")["split"].nunique().max() == 1  # no patient in two splits
    assert set(frame["split"]) == {"train", "val", "test"}
    assert (frame["modality"] == "DX").all() and (frame["view_position"] == "PA").all()
    # Labels follow the CSV row of each image.
    expected = {pseudo.sample(f"images/site/PHIPID{p:04d}_{k}.dcm", 0):
                [int((p + k + j) % 3 == 0) for j in range(3)] for p in range(12) for k in range(2)}
    for row, y in zip(frame["id"], manifest.labels()):
        assert list(y.astype(int)) == expected[row]

    ds = CacheDataset(out, "train")
    item = ds[0]
    assert tuple(item["image"].shape) == (1, 32, 32)
    train = np.stack([ds.image(i) for i in range(len(ds))])
    stats = read_stats(out)
    assert stats["mean"][0] == pytest.approx(float(train.mean()), rel=1e-5)   # train split only
    assert stats["std"][0] == pytest.approx(float(train.std()), rel=1e-4)


def test_every_pydicom_file_through_the_stage(tmp_path: Path) -> None:
    src = Path(pydicom.__file__).parent / "data" / "test_files"
    raw = tmp_path / "raw"
    shutil.copytree(src, raw / "images")
    keys = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file())
    rows = [{"Image Index": k.removeprefix("images/"), "Finding Labels": ["No Finding", "a", "b", "a|b"][i % 4],
             "Patient ID": f"p{i % 40}"} for i, k in enumerate(keys)]
    _write_csv(raw / "labels.csv", rows)
    _, cfg = _cfg(tmp_path, max_reject_fraction=1.0)
    report = ingest("medical", raw, raw / "labels.csv", tmp_path / "out", cfg)
    _check_conservation(keys, tmp_path / "out")
    assert report["n_input"] == len(keys) > 80 and report["n_ingested"] > 60
    reasons = set(report["rejects_by_reason"])
    assert reasons <= {"no pixel data", "not DICOM", "truncated or corrupt", "unsupported transfer syntax",
                       "decode failed", "incomplete image header"}, reasons
    assert {"no pixel data", "not DICOM", "truncated or corrupt"} <= reasons


def test_reject_fraction_fails_and_keeps_previous_outputs(tmp_path: Path) -> None:
    raw = _medical_raw(tmp_path / "raw")
    out = tmp_path / "cache"
    _, cfg = _cfg(tmp_path)
    ingest("medical", raw, raw / "labels.csv", out, cfg)
    before = {p.name: d for p, d in _all_bytes(out)}
    _, strict = _cfg(tmp_path, max_reject_fraction=0.1)
    with pytest.raises(UserError, match=r"rejected 4 of 28 .*max_reject_fraction = 0.1.*burned-in annotation"):
        ingest("medical", raw, raw / "labels.csv", out, strict)
    assert {p.name: d for p, d in _all_bytes(out)} == before
    assert not list(tmp_path.glob(".cache.ingest-*"))


def test_killed_publish_leaves_no_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _medical_raw(tmp_path / "raw", n_patients=6)
    out = tmp_path / "cache"
    _, cfg = _cfg(tmp_path)
    ingest("medical", raw, raw / "labels.csv", out, cfg)
    fresh = tmp_path / "fresh"
    ingest("medical", raw, raw / "labels.csv", fresh, cfg)
    real_replace, calls = ingest_mod.os.replace, []

    def dying_replace(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed half-way through moving outputs in
        real_replace(src, dst)

    monkeypatch.setattr(ingest_mod.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        ingest_mod.publish(fresh, out)
    assert not (out / "manifest.csv").exists()  # nothing DVC or finetune would accept
    with pytest.raises(FileNotFoundError):
        read_manifest(out)


def test_label_file_problems(tmp_path: Path) -> None:
    raw = _medical_raw(tmp_path / "raw", n_patients=4)
    labels = raw / "labels.csv"
    rows = list(csv.DictReader(labels.open()))
    _, cfg = _cfg(tmp_path, max_reject_fraction=1.0, medical={"image_size": 32, "label_names": ["cardiomegaly"]})
    with pytest.raises(UserError, match=r"unknown label name\(s\) \['effusion', 'nodule'\]"):
        ingest("medical", raw, labels, tmp_path / "o1", cfg)
    _, cfg = _cfg(tmp_path, max_reject_fraction=1.0)
    _write_csv(tmp_path / "dup.csv", rows + rows[:1])
    with pytest.raises(UserError, match="duplicate 'Image Index' on rows 2, "):
        ingest("medical", raw, tmp_path / "dup.csv", tmp_path / "o2", cfg)
    _write_csv(tmp_path / "empty.csv", [{**rows[0], "Finding Labels": ""}, *rows[1:]])
    with pytest.raises(UserError, match="empty 'Finding Labels' on rows 2"):
        ingest("medical", raw, tmp_path / "empty.csv", tmp_path / "o3", cfg)
    _write_csv(tmp_path / "extra.csv", rows + [{**rows[0], "Image Index": "gone.dcm"}])
    report = ingest("medical", raw, tmp_path / "extra.csv", tmp_path / "o4", cfg)
    assert report["labels_without_images"] == 1
    _write_csv(tmp_path / "none.csv", [{**rows[0], "Image Index": "gone.dcm"}])
    with pytest.raises(UserError, match="matches a file"):
        ingest("medical", raw, tmp_path / "none.csv", tmp_path / "o5", cfg)
    for out in ("o1", "o2", "o3", "o5"):
        assert not (tmp_path / out / "manifest.csv").exists()


# --------------------------------------------------------------------------- satellite
def _scene(path: Path, data: np.ndarray, origin_x: float, **profile: object) -> None:
    base = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype,
                crs="EPSG:32633", transform=from_origin(origin_x, 4_000_000, 10, 10), nodata=0, tiled=True,
                blockxsize=16, blockysize=16, compress="deflate")
    base.update(profile)
    with rasterio.open(path, "w", **base) as ds:
        ds.write(data)


def _satellite_raw(root: Path, n_scenes: int = 6) -> Path:
    """64x64 4-band uint16 scenes, label rasters; scene 0 has a nodata corner; plus broken scenes."""
    (root / "scenes").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_scenes):
        data = rng.integers(100, 9000, (4, 64, 64)).astype(np.uint16)
        if i == 0:
            data[:, :16, :32] = 0      # two chips all nodata -> dropped
            data[:, 16:20, :16] = 0    # a quarter of a chip nodata -> kept, filled
        label = np.zeros((64, 64), np.uint8)
        label[:, 32:] = 1 + i % 3
        label[60:, :] = 255
        _scene(root / "scenes" / f"tile{i}.tif", data, 500_000 + 1000 * i)
        _scene(root / "labels" / f"tile{i}.tif", label[None], 500_000 + 1000 * i, nodata=255)
    _scene(root / "scenes" / "void.tif", np.zeros((4, 64, 64), np.uint16), 0)
    _scene(root / "labels" / "void.tif", np.zeros((1, 64, 64), np.uint8), 0, nodata=255)
    _scene(root / "scenes" / "rgb.tif", np.ones((3, 64, 64), np.uint16), 0)
    _scene(root / "scenes" / "broken.tif", rng.integers(1, 9000, (4, 64, 64)).astype(np.uint16), 0)
    _scene(root / "labels" / "broken.tif", np.zeros((1, 64, 64), np.uint8), 0, nodata=255)
    with rasterio.open(root / "scenes" / "broken.tif") as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_2_3", "TIFF", bidx=2))
    with open(root / "scenes" / "broken.tif", "r+b") as f:
        f.seek(offset + 4)
        f.write(b"\xff" * 32)
    return root


SAT = {"tile_size": 16, "stride": 16, "label_names": ["water", "forest", "cropland", "urban"],
       "min_label_fraction": 0.05, "max_nodata_fraction": 0.5}


def test_satellite_raster_labels_end_to_end(tmp_path: Path) -> None:
    raw = _satellite_raw(tmp_path / "raw")
    params, cfg = _cfg(tmp_path, max_reject_fraction=0.5, satellite=SAT)
    out = tmp_path / "cache"
    assert main(["ingest", "--domain", "satellite", "--params", str(params), "--raw", str(raw),
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    keys = [p.relative_to(raw).as_posix() for p in (raw / "scenes").iterdir()]
    _check_conservation(keys, out)
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert rejects["scenes/void.tif"].startswith("all nodata")
    assert rejects["scenes/rgb.tif"].startswith("band count mismatch")
    assert rejects["scenes/broken.tif"].startswith("unreadable block")
    assert report["chips_dropped_nodata"] == 2 and report["n_samples"] == 6 * 16 - 2

    manifest = read_manifest(out)
    frame = manifest.frame.set_index("id")
    assert frame.groupby("group")["split"].nunique().max() == 1
    row = frame.loc["tile2_00016_00032"]
    assert row["crs"] == "EPSG:32633" and row["group"] == "tile2"
    assert [float(v) for v in row["transform"].split()] == [10, 0, 502_000 + 320, 0, -10, 4_000_000 - 160]
    assert [float(v) for v in row["bounds"].split()] == [502_320, 4_000_000 - 320, 502_480, 4_000_000 - 160]
    # Labels: class 1 + i % 3 on the right half, class 0 on the left; 255 rows ignored.
    labels = manifest.labels()
    ids = list(manifest.frame["id"])
    assert list(labels[ids.index("tile2_00016_00032")]) == [0, 0, 0, 1]
    assert list(labels[ids.index("tile1_00048_00000")]) == [1, 0, 0, 0]

    # Stats: valid pixels of train chips only, straight from the rasters.
    train = manifest.split("train")
    sums, count = np.zeros(4), 0
    for _, r in train.iterrows():
        with rasterio.open(raw / r["source"]) as ds:
            block = ds.read(window=rasterio.windows.Window(r["x"], r["y"], 16, 16)).astype(np.float64) * 1e-4
        valid = block.all(0)
        sums += block[:, valid].sum(1)
        count += valid.sum()
    stats = read_stats(out)
    np.testing.assert_allclose(stats["mean"], sums / count, rtol=1e-6)
    assert stats["channels"] == ["B2", "B3", "B4", "B8"] and stats["size"] == [16, 16]

    # The partly-nodata chip is kept; its nodata pixels hold the train mean, so they normalise to 0.
    part = frame.loc["tile0_00016_00000"]
    assert 0 < float(part["nodata_fraction"]) <= 0.5
    img = np.asarray(ShardReader(out).get(int(part["shard"]), int(part["index"])))
    normalised = (img - np.array(stats["mean"])[:, None, None]) / np.array(stats["std"])[:, None, None]
    np.testing.assert_allclose(normalised[:, :4, :], 0.0, atol=1e-5)
    assert np.abs(normalised[:, 4:, :]).max() > 0.1


def test_satellite_tiles_csv(tmp_path: Path) -> None:
    raw = _satellite_raw(tmp_path / "raw", n_scenes=4)
    rows = [{"tile": f"tile{i}_{y:05d}_{x:05d}", "labels": "water|urban" if (x + y + i) % 32 == 0 else "forest",
             "scene": f"tile{i}.tif"} for i in range(3) for y in (0, 32) for x in (0, 16, 32, 48)]
    _write_csv(raw / "tiles.csv", rows)
    sat = {**SAT, "label_source": "csv"}
    _, cfg = _cfg(tmp_path, max_reject_fraction=1.0, satellite=sat)
    report = ingest("satellite", raw, raw / "tiles.csv", tmp_path / "out", cfg)
    manifest = read_manifest(tmp_path / "out")
    assert manifest.label_names == ("water", "forest", "cropland", "urban")
    expected = {r["tile"]: r["labels"] for r in rows}
    kept = set(manifest.frame["id"])
    assert "tile0_00000_00000" not in kept and "tile0_00000_00016" not in kept  # all-nodata chips dropped
    assert report["chips_dropped_nodata"] == 2
    for tile, y in zip(manifest.frame["id"], manifest.labels()):
        names = {n for n, v in zip(manifest.label_names, y) if v}
        assert names == set(expected[tile].split("|")), tile
    rejects = dict(pd.read_csv(tmp_path / "out" / "rejects.csv").itertuples(index=False))
    assert rejects["scenes/tile3.tif"].startswith("no labels")
    _write_csv(raw / "bad.csv", rows + [{"tile": "tile0_00016_00016", "labels": "lava", "scene": "tile0.tif"}])
    with pytest.raises(UserError, match=r"unknown label name\(s\) \['lava'\]"):
        ingest("satellite", raw, raw / "bad.csv", tmp_path / "out2", cfg)


def test_shared_geotiffs_through_the_stage(tmp_path: Path, shared_geotiff: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "scenes").mkdir(parents=True)
    (raw / "labels").mkdir()
    names = ("all-nodata.tif", "float_nan.tif", "float_raster_with_nodata.tif", "rotated.tif", "cogeo.tif")
    for name in names:
        shutil.copy(shared_geotiff / name, raw / "scenes" / name)
        with rasterio.open(shared_geotiff / name) as src:
            profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype="uint8",
                           transform=src.transform, nodata=255, **({"crs": src.crs} if src.crs else {}))
        with rasterio.open(raw / "labels" / name, "w", **profile) as dst:
            dst.write(np.zeros((1, profile["height"], profile["width"]), np.uint8))
    sat = {"bands": [1], "band_names": ["B1"], "tile_size": 8, "stride": 64, "label_names": ["a", "b"]}
    _, cfg = _cfg(tmp_path, max_reject_fraction=1.0, satellite=sat)
    report = ingest("satellite", raw, raw / "labels", tmp_path / "out", cfg)
    _check_conservation([f"scenes/{n}" for n in names], tmp_path / "out")
    rejects = dict(pd.read_csv(tmp_path / "out" / "rejects.csv").itertuples(index=False))
    assert rejects["scenes/all-nodata.tif"].startswith("all nodata")
    assert rejects["scenes/float_nan.tif"].startswith("smaller than a tile")
    frame = read_manifest(tmp_path / "out").frame.set_index("id")
    assert report["n_samples"] == len(frame) == 1 + 1 + 16 * 16
    assert pd.isna(frame.loc["rotated_00000_00000", "crs"])  # rotated.tif has no CRS: recorded as empty
    rotated = [float(v) for v in frame.loc["rotated_00000_00000", "transform"].split()]
    assert rotated[1] != 0 and rotated[3] != 0  # the rotated geotransform is kept
    reader = ShardReader(tmp_path / "out")
    for chip in ("float_raster_with_nodata_00000_00000", "rotated_00000_00000"):
        img = reader.get(int(frame.loc[chip, "shard"]), int(frame.loc[chip, "index"]))
        assert np.isfinite(img).all() and np.abs(img).max() < 1e6  # the -3.4e38 nodata never reached the cache


def _crashy(task: int) -> int:
    """Kills its worker process on task 3, like a decoder segfault would."""
    if task == 3:
        os._exit(1)
    return task * 2


def test_a_task_that_kills_its_worker_is_isolated_not_fatal() -> None:
    results = list(ingest_mod.parallel_map(_crashy, list(range(40)), 2, {"key": b"k"}, "test",
                                           isolate=lambda task, err: -1))
    assert results == [-1 if t == 3 else t * 2 for t in range(40)]


def test_streaming_shard_writer_writes_the_same_bytes_as_shard_writer(tmp_path: Path) -> None:
    from medvit.data.cache import ShardWriter, shard_path

    images = [np.random.default_rng(i).random((2, 5, 7), dtype=np.float32) for i in range(7)]
    plain, streaming = ShardWriter(tmp_path / "a", 3), ingest_mod.StreamingShardWriter(tmp_path / "b", 3)
    for image in images:
        assert plain.add(image) == streaming.add(image)
    plain.flush()
    streaming.flush()
    for shard in range(3):
        assert shard_path(tmp_path / "a", shard).read_bytes() == shard_path(tmp_path / "b", shard).read_bytes()
    assert not list((tmp_path / "b").rglob("*.tmp"))


def test_scene_in_several_strips_with_a_corrupt_later_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _satellite_raw(tmp_path / "raw")
    # A tiny strip budget: every 16-row chip row becomes its own task (bounded memory for huge scenes).
    monkeypatch.setattr(ingest_mod, "_STRIP_BYTES", 64 * 4 * 8 * 16)
    _, cfg = _cfg(tmp_path, max_reject_fraction=0.5, satellite=SAT)
    report = ingest("satellite", raw, raw / "labels", tmp_path / "out", cfg)
    rejects = dict(pd.read_csv(tmp_path / "out" / "rejects.csv").itertuples(index=False))
    assert rejects["scenes/broken.tif"].startswith("unreadable block: rows 48-64")
    # Its first three strips were written before the bad block was met: cached but never in the manifest.
    assert report["unreferenced_cache_rows"] == 12
    frame = read_manifest(tmp_path / "out").frame
    assert not frame["source"].eq("scenes/broken.tif").any()
    assert report["n_samples"] == len(frame) == 6 * 16 - 2
    reader = ShardReader(tmp_path / "out")
    for shard, index in zip(frame["shard"], frame["index"]):
        assert reader.get(int(shard), int(index)).shape == (4, 16, 16)


def test_letterbox_block_average_then_bilinear() -> None:
    rng = np.random.default_rng(0)
    # An exact integer ratio is the exact block mean.
    image = rng.random((1, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(ingest_mod.letterbox(image, 16)[0], image[0].reshape(16, 4, 16, 4).mean((1, 3)),
                               atol=1e-6)
    # A non-integer ratio on a smooth, non-square image stays close to a one-pass area resample,
    # keeps the aspect ratio and pads black, centred.
    yy, xx = np.mgrid[0:300, 0:517].astype(np.float32)
    smooth = (0.5 + 0.4 * np.sin(xx / 23.0) * np.cos(yy / 17.0))[None]
    out = ingest_mod.letterbox(smooth, 224)
    nh = round(300 * 224 / 517)  # 130 rows of image, 47 black rows above and below
    top = (224 - nh) // 2
    assert out.shape == (1, 224, 224) and out.dtype == np.float32
    assert (out[0, :top] == 0).all() and (out[0, top + nh:] == 0).all()
    from PIL import Image

    area = np.asarray(Image.fromarray(smooth[0]).resize((224, nh), Image.Resampling.BOX))
    assert np.abs(out[0, top:top + nh] - area).mean() < 3e-3
    assert np.abs(out[0, top:top + nh] - area).max() < 1e-2
    # Upscaling keeps [0, 1] and fills the frame.
    small = rng.random((1, 8, 8), dtype=np.float32)
    up = ingest_mod.letterbox(small, 32)
    assert up.min() >= 0.0 and up.max() <= 1.0 and up[0].std() > 0.05


def test_part_writer_streams_np_save_bytes_and_splits_parts(tmp_path: Path) -> None:
    images = [np.random.default_rng(i).random((1, 6, 5), dtype=np.float32) for i in range(5)]
    writer = ingest_mod.PartWriter(tmp_path, ".part-x", limit=2)
    locs = [writer.add(im) for im in images[:3]]
    locs.append(writer.add(np.zeros((1, 4, 4), np.float32)))  # a new shape starts a new part
    locs.append(writer.add(images[4]))
    parts = writer.close()
    assert locs == [(0, 0), (0, 1), (1, 0), (2, 0), (3, 0)]
    assert [n for _, n in parts] == [2, 1, 1, 1]
    expected = [np.stack(images[:2]), np.stack(images[2:3]), np.zeros((1, 1, 4, 4), np.float32),
                np.stack(images[4:])]
    for (name, _), array in zip(parts, expected):
        reference = tmp_path / "ref.npy"
        np.save(reference, array)
        assert (tmp_path / name).read_bytes() == reference.read_bytes(), name
        np.testing.assert_array_equal(np.load(tmp_path / name, mmap_mode="r"), array)
    with pytest.raises(ValueError, match="NaN"):
        writer.add(np.full((1, 6, 5), np.nan, np.float32))
    aborted = ingest_mod.PartWriter(tmp_path / "sub", ".part-y", limit=2)
    (tmp_path / "sub").mkdir()
    for im in images[:3]:
        aborted.add(im)
    aborted.abort()
    assert not list((tmp_path / "sub").iterdir())


def _shards_and_manifest(out: Path) -> tuple[dict[str, bytes], str]:
    shards = {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}
    return shards, (out / "manifest.csv").read_text()


def test_cache_is_identical_whatever_the_worker_count(tmp_path: Path) -> None:
    raw = _medical_raw(tmp_path / "raw", n_patients=30)
    _, one = _cfg(tmp_path, workers=1, shard_size=4)
    _, two = _cfg(tmp_path, workers=2, shard_size=4)
    ingest("medical", raw, raw / "labels.csv", tmp_path / "one", one)
    ingest("medical", raw, raw / "labels.csv", tmp_path / "two", two)
    shards, manifest = _shards_and_manifest(tmp_path / "one")
    assert (shards, manifest) == _shards_and_manifest(tmp_path / "two")
    assert len(shards) > 5 and not any(name.startswith(".") for name in shards)
    frame = pd.read_csv(tmp_path / "one" / "manifest.csv")
    assert frame.groupby("shard")["index"].max().max() <= 3  # shard_size caps every shard
    # Each row points at its own file's image.
    reader = ShardReader(tmp_path / "one")
    from medvit.io.dicom import DicomOptions, read_frames

    pseudo = Pseudonymizer(KEY.encode())
    by_id = {pseudo.sample(p.relative_to(raw).as_posix(), 0): p for p in (raw / "images").rglob("PHIPID*.dcm")}
    for sample_id, shard, index in zip(frame["id"], frame["shard"], frame["index"]):
        _, frames = read_frames(by_id[sample_id], DicomOptions())
        expected = ingest_mod.letterbox(next(frames)[1], 32)
        np.testing.assert_array_equal(reader.get(int(shard), int(index)), expected)


def _dies_on_crash_files(task: tuple) -> object:
    if task[1].endswith("crash.dcm"):
        os._exit(1)  # what a segfaulting decoder does to its worker
    return _real_medical_task(task)


_real_medical_task = ingest_mod.medical_task


def test_a_file_that_kills_its_worker_is_rejected_and_its_block_rerun(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _medical_raw(tmp_path / "raw", n_patients=20)
    shutil.copy(raw / "images" / "site" / "PHIPID0003_0.dcm", raw / "images" / "site" / "crash.dcm")
    with open(raw / "labels.csv", "a", newline="") as f:
        f.write("crash.dcm,nodule,PHICSV3\n")
    monkeypatch.setattr(ingest_mod, "medical_task", _dies_on_crash_files)  # forked workers inherit it
    _, cfg = _cfg(tmp_path, workers=2, shard_size=4)
    out = tmp_path / "out"
    report = ingest("medical", raw, raw / "labels.csv", out, cfg)
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert rejects["images/site/crash.dcm"].startswith("decoder crashed")
    assert report["n_ingested"] == 40  # the crashed file's block-mates were re-run and kept
    keys = [p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file() and p.name != "labels.csv"]
    _check_conservation(keys, out)
    assert not [p for p in (out / "shards").iterdir() if p.name.startswith(".")]  # no stray part files
    frame = pd.read_csv(out / "manifest.csv")
    reader = ShardReader(out)
    assert all(reader.get(int(s), int(i)).shape == (1, 32, 32) for s, i in zip(frame["shard"], frame["index"]))


def test_an_unforeseen_error_rejects_the_file_without_its_message(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import medvit.io.dicom as dicom_mod

    raw = _medical_raw(tmp_path / "raw")
    real = dicom_mod.read_frames

    def boom(path: str, options: object) -> object:  # a failure no check foresaw, quoting a header value
        if str(path).endswith("burned.dcm"):
            raise KeyError("PHIPID0001")
        return real(path, options)

    monkeypatch.setattr(dicom_mod, "read_frames", boom)
    _, cfg = _cfg(tmp_path, workers=1)
    out = tmp_path / "out"
    report = ingest("medical", raw, raw / "labels.csv", out, cfg)
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert rejects["images/site/burned.dcm"] == "decode failed: unexpected KeyError"
    assert "PHIPID0001" not in (out / "rejects.csv").read_text()
    assert report["n_ingested"] == 24  # every other file still made it


def test_sums_are_float64_exact_with_and_without_a_mask() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((3, 50, 40), dtype=np.float32)
    x64 = image.reshape(3, -1).astype(np.float64)
    got = ingest_mod._sums(image)
    np.testing.assert_allclose(got, np.stack([x64.sum(1), (x64**2).sum(1), np.full(3, 2000.0)]), rtol=1e-12)
    valid = rng.random((3, 50, 40)) > 0.3
    masked = ingest_mod._sums(image, valid)
    v = valid.reshape(3, -1)
    np.testing.assert_allclose(masked, np.stack([(x64 * v).sum(1), (x64**2 * v).sum(1), v.sum(1)]), rtol=1e-12)
