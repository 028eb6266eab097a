"""The embedded sample data set: real DICOM / GeoTIFF files, labels, determinism and a learnable signal."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from pydicom import dcmread
from pydicom.pixels import apply_modality_lut
from pydicom.uid import UID
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from medvit.cli import main
from medvit.config import Params, SampleMedical, SampleSatellite
from medvit.data.sample import (
    FINDINGS,
    NO_FINDING,
    PHI_KEYWORDS,
    PHI_PATTERN,
    chest_radiograph,
    chip_labels,
    land_cover_scene,
    planted_phi,
    tile_grid,
    tile_id,
    write_medical,
    write_satellite,
)
from medvit.errors import UserError

MEDICAL = SampleMedical(n_patients=8, images_per_patient=3, image_size=64)
SATELLITE = SampleSatellite(n_scenes=2, scene_size=128)
DX, CR = "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1"


@pytest.fixture(scope="module")
def medical(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "medical"
    write_medical(out, MEDICAL, seed=0)
    return out


@pytest.fixture(scope="module")
def satellite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "satellite"
    write_satellite(out, SATELLITE, seed=0)
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _display(ds) -> np.ndarray:
    """PS3.3 display chain: modality LUT, first linear window to [0, 1], MONOCHROME1 inverted."""
    center, width = (float(ds[k].value[0] if ds[k].VM > 1 else ds[k].value) for k in ("WindowCenter", "WindowWidth"))
    out = np.clip((apply_modality_lut(ds.pixel_array, ds) - (center - width / 2)) / width, 0, 1)
    return 1 - out if ds.PhotometricInterpretation == "MONOCHROME1" else out


# --------------------------------------------------------------------------- medical
def test_medical_files_are_valid_dicom_part10(medical: Path) -> None:
    files = sorted((medical / "images").glob("*.dcm"))
    assert len(files) == MEDICAL.n_patients * MEDICAL.images_per_patient
    seen: Counter[str] = Counter()
    uids: set[str] = set()
    for path in files:
        raw = path.read_bytes()
        assert raw[128:132] == b"DICM"  # Part 10: 128-byte preamble, then the prefix
        ds = dcmread(path)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID in (DX, CR) and ds.Modality == ("DX" if ds.SOPClassUID == DX else "CR")
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
            assert UID(uid).is_valid
            uids.add(str(uid))
        assert ds.BitsAllocated == 16 and ds.BitsStored in (12, 16) and ds.HighBit == ds.BitsStored - 1
        arr = ds.pixel_array
        assert arr.shape == (64, 64) and arr.dtype == np.uint16 and arr.max() <= 2**ds.BitsStored - 1
        assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
        assert float(ds.RescaleSlope) > 0 and "RescaleIntercept" in ds
        assert "WindowCenter" in ds and "WindowWidth" in ds
        if ds.Modality == "DX":  # PS3.3 C.8.11.7: DX rescale is the identity
            assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
        seen[ds.PhotometricInterpretation] += 1
        seen[ds.file_meta.TransferSyntaxUID.name] += 1
        seen[f"burned {ds.BurnedInAnnotation}"] += 1
        seen[f"rescale {ds.RescaleSlope}/{ds.RescaleIntercept}"] += 1
    assert len(uids) == 3 * len(files)
    assert seen["MONOCHROME1"] == round(0.25 * len(files))
    assert seen["burned YES"] == MEDICAL.burned_in and seen["burned NO"] == len(files) - MEDICAL.burned_in
    for syntax in ("Explicit VR Little Endian", "Implicit VR Little Endian", "RLE Lossless",
                   "JPEG 2000 Image Compression (Lossless Only)"):
        assert seen[syntax] > 0, syntax
    assert sum(1 for k in seen if k.startswith("rescale")) > 1  # slopes / intercepts vary


def test_labels_csv_is_chestxray14_style(medical: Path) -> None:
    labels = pd.read_csv(medical / "labels.csv")
    assert list(labels.columns)[:2] == ["Image Index", "Finding Labels"] and "Patient ID" in labels
    assert sorted(labels["Image Index"]) == sorted(p.name for p in (medical / "images").glob("*.dcm"))
    assert labels["Patient ID"].nunique() == MEDICAL.n_patients
    assert (labels.groupby("Patient ID").size() == MEDICAL.images_per_patient).all()
    for _, row in labels.iterrows():
        names = row["Finding Labels"].split("|")
        assert names == [NO_FINDING] or set(names) <= set(FINDINGS)
        assert row["Patient ID"] not in row["Image Index"]  # the file name must not leak the patient
        assert dcmread(medical / "images" / row["Image Index"], stop_before_pixels=True).PatientID == row["Patient ID"]
    found = labels["Finding Labels"].str.split("|").explode().value_counts()
    assert all(found.get(f, 0) > 0 for f in FINDINGS) and found.get(NO_FINDING, 0) > 0
    assert (labels["Finding Labels"].str.count(r"\|") >= 1).any()  # findings co-occur


def test_monochrome1_displays_like_monochrome2(medical: Path) -> None:
    photometric = set()
    for path in sorted((medical / "images").glob("*.dcm")):
        ds = dcmread(path)
        if ds.BurnedInAnnotation == "YES":  # its text box covers the corner
            continue
        image = _display(ds)
        photometric.add(ds.PhotometricInterpretation)
        # Air above the shoulders is dark and the spine above the heart bright, whatever the photometry.
        assert image[:4, :4].mean() < 0.15, path.name
        assert image[8:20, 30:34].mean() > 0.5, path.name
    assert photometric == {"MONOCHROME1", "MONOCHROME2"}


def test_file_labels_match_the_pixels(medical: Path) -> None:
    labels = pd.read_csv(medical / "labels.csv")
    display = {n: _display(dcmread(medical / "images" / n)) for n in labels["Image Index"]}
    has = lambda f: labels["Finding Labels"].str.split("|").map(lambda names: f in names).to_numpy()
    # The enlarged heart covers the lung beside and above the normal heart: (rows, cols) of 64 px.
    # (The other findings' effects are checked on paired renders below: in 24 files they overlap.)
    value = np.array([display[n][27:32, 32:48].mean() for n in labels["Image Index"]])
    assert value[has("cardiomegaly")].mean() - value[~has("cardiomegaly")].mean() > 0.15


@pytest.mark.parametrize("finding", FINDINGS)
def test_each_finding_is_a_large_effect(finding: str) -> None:
    """Same patient and pose with and without the finding (the renderer is seeded identically)."""
    size = 64
    deltas = []
    for seed in range(4):
        base = chest_radiograph(np.random.default_rng(seed), size, ())
        sick = chest_radiograph(np.random.default_rng(seed), size, (finding,))
        deltas.append(sick - base)
    delta = np.mean(deltas, 0)
    top, bottom, centre_right = delta[: size // 2], delta[size // 2:], delta[28:40, 36:52]
    if finding == "cardiomegaly":
        assert centre_right.mean() > 0.15
    elif finding == "effusion":
        assert bottom.mean() > 2 * abs(top.mean()) and np.mean([(d > 0.2).mean() for d in deltas]) > 0.04
    elif finding == "nodule":  # several distinct bright round opacities
        assert np.mean([(d > 0.25).mean() for d in deltas]) > 0.01
    else:  # pneumothorax: a dark apical space
        assert np.mean([(d[: size // 2] < -0.15).mean() for d in deltas]) > 0.04


def test_findings_are_learnable_from_pixels() -> None:
    """A linear model on 12x12 pooled pixels separates the positional findings; a blob count the nodules."""
    size, n = 48, 140
    y = np.random.default_rng(0).random((n, len(FINDINGS))) < 0.33
    pooled, blobs = [], []
    for i in range(n):
        img = chest_radiograph(np.random.default_rng([7, i]), size, [f for f, on in zip(FINDINGS, y[i]) if on])
        pooled.append(img.reshape(12, 4, 12, 4).mean((1, 3)).ravel())
        pad = np.pad(img, 3, mode="edge")
        blur = np.mean([pad[a:a + size, b:b + size] for a in range(7) for b in range(7)], 0)
        blobs.append(((img - blur)[10:34, 5:43] > 0.15).mean())  # local bright spots in the lung fields
    x = np.array(pooled)
    for j, finding in enumerate(FINDINGS):
        if finding == "nodule":
            auc = roc_auc_score(y[:, j], blobs)
        else:
            clf = LogisticRegression(max_iter=3000).fit(x[:90], y[:90, j])
            auc = roc_auc_score(y[90:, j], clf.predict_proba(x[90:])[:, 1])
        assert auc > 0.85, (finding, auc)


def test_planted_phi_is_in_the_raw_headers(medical: Path) -> None:
    phi = planted_phi(medical)
    labels = pd.read_csv(medical / "labels.csv")
    assert set(labels["Patient ID"]) <= phi
    ds = dcmread(next((medical / "images").glob("*.dcm")), stop_before_pixels=True)
    for keyword in PHI_KEYWORDS:
        value = str(ds[keyword].value)
        assert value in phi, keyword
        assert keyword == "PatientBirthDate" or PHI_PATTERN.search(value), keyword
    assert str(ds.InstitutionName) == "PHI General Hospital" and str(ds.PatientName).startswith("PHIDOE^")
    assert any(v.startswith("PHIPRIV ") for v in phi)  # private tag, removed by the basic profile


def test_unknown_finding_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sample.medical.findings"):
        write_medical(tmp_path / "m", SampleMedical(n_patients=1, image_size=32, findings=("fracture",)), 0)
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- satellite
def test_scenes_and_label_rasters_are_georeferenced(satellite: Path) -> None:
    scenes = sorted((satellite / "scenes").glob("*.tif"))
    assert len(scenes) == SATELLITE.n_scenes
    crss, any_nodata = set(), False
    for path in scenes:
        with rasterio.open(path) as src, rasterio.open(satellite / "labels" / path.name) as lab:
            assert src.count == 4 and src.dtypes == ("uint16",) * 4 and src.nodata == 0
            assert src.descriptions == SATELLITE.band_names
            assert src.crs.is_projected and src.crs.to_epsg() // 100 in (326, 327)  # WGS 84 / UTM
            assert (src.transform.a, src.transform.e, src.transform.b, src.transform.d) == (10, -10, 0, 0)
            assert src.profile["tiled"] and src.block_shapes[0] == (64, 64)
            assert src.compression.name == "deflate"
            assert (lab.crs, lab.transform, lab.shape) == (src.crs, src.transform, src.shape)
            assert lab.dtypes == ("uint8",) and lab.nodata == 255
            pixels, classes = src.read(), lab.read(1)
            window = src.read(1, window=rasterio.windows.Window(64, 0, 64, 64))  # windowed reads work
            assert np.array_equal(window, pixels[0, :64, 64:])
            assert pixels.max() <= 10000
            assert np.array_equal((pixels == 0).all(0), classes == 255)  # nodata agrees
            assert set(np.unique(classes)) <= set(range(len(SATELLITE.classes))) | {255}
            any_nodata |= bool((classes == 255).any())
            crss.add(src.crs.to_epsg())
    assert any_nodata and len(crss) == len(scenes)


def test_tiles_csv_matches_the_grid_and_the_label_rasters(satellite: Path) -> None:
    tiles = pd.read_csv(satellite / "tiles.csv", keep_default_na=False)
    assert list(tiles.columns) == ["tile", "labels", "scene"]
    size, t = SATELLITE.scene_size, SATELLITE.tile_size
    expected = []
    for path in sorted((satellite / "labels").glob("*.tif")):
        with rasterio.open(path) as lab:
            classes = lab.read(1)
        for y, x in tile_grid(size, size, t, SATELLITE.stride):
            chip = classes[y:y + t, x:x + t]
            if (chip == 255).mean() <= SATELLITE.max_nodata_fraction:
                names = [SATELLITE.classes[c] for c in chip_labels(chip, 5, SATELLITE.min_label_fraction)]
                expected.append((tile_id(path.stem, y, x), "|".join(names), path.stem))
    assert list(tiles.itertuples(index=False, name=None)) == expected
    assert tiles["tile"].iloc[0] == f"{tiles['scene'].iloc[0]}_00000_00000"
    counts = tiles["labels"].str.split("|").map(len)
    assert 1 <= counts.mean() <= 3


def test_chip_labels_use_the_valid_area() -> None:
    chip = np.full((10, 10), 255, np.uint8)
    chip[:5] = 0       # 50 valid pixels: 46 water, 4 forest (8 % of the valid area)
    chip[0, :4] = 1
    assert chip_labels(chip, 3, 0.05) == [0, 1]
    assert chip_labels(chip, 3, 0.10) == [0]
    assert chip_labels(np.full((4, 4), 255, np.uint8), 3, 0.05) == []


def test_classes_are_spectrally_separable() -> None:
    refl, labels = land_cover_scene(np.random.default_rng(1), 256, SATELLITE.classes, SATELLITE.band_names,
                                    swath_edge=False)
    pixels = refl.reshape(4, -1).T  # (N, B): B2, B3, B4, B8
    y = labels.ravel()
    means = np.stack([pixels[y == k].mean(0) for k in range(5)])
    ndvi = (means[:, 3] - means[:, 2]) / (means[:, 3] + means[:, 2])
    water, forest, cropland, urban, bare = range(5)
    assert ndvi[water] < 0 < ndvi[urban] < ndvi[cropland] < ndvi[forest] and ndvi[forest] > 0.7
    assert means[water, 3] < 500 and means[bare, 2] > means[urban, 2] > means[cropland, 2] > means[forest, 2]
    nearest = np.argmin(((pixels[:, None, :] - means[None]) ** 2).sum(-1), 1)
    assert (nearest == y).mean() > 0.8  # a nearest-mean pixel classifier already works


# --------------------------------------------------------------------------- both
def test_generation_is_deterministic(medical: Path, satellite: Path, tmp_path: Path) -> None:
    write_medical(tmp_path / "medical", MEDICAL, seed=0)
    write_satellite(tmp_path / "satellite", SATELLITE, seed=0)
    assert _digest(tmp_path / "medical") == _digest(medical)
    assert _digest(tmp_path / "satellite") == _digest(satellite)
    write_satellite(tmp_path / "other", SATELLITE, seed=1)
    assert _digest(tmp_path / "other") != _digest(satellite)


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


def test_cli_writes_the_sample_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("sample:\n  satellite: {n_scenes: 1, scene_size: 64}\n")
    assert main(["sample", "--domain", "satellite", "--params", str(params), "--out", str(tmp_path / "sat")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("sample satellite: wrote 1 scenes")
    assert (tmp_path / "sat" / "tiles.csv").is_file() and len(list((tmp_path / "sat" / "scenes").glob("*.tif"))) == 1


def test_sample_tile_grid_defaults_match_ingest() -> None:
    sample, ingest = Params().sample.satellite, Params().ingest.satellite
    for key in ("tile_size", "stride", "min_label_fraction", "max_nodata_fraction"):
        assert getattr(sample, key) == getattr(ingest, key), key
    assert sample.classes == ingest.label_names and sample.band_names == ingest.band_names
