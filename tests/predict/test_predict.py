"""``medvit predict`` end to end on real files with a registered tiny model (real SQLite MLflow store)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
import rasterio
from affine import Affine
from pydicom.data import get_testdata_file

from medvit.cli import main
from medvit.data.preprocess import Preprocessor
from medvit.io.dicom import read_frames
from medvit.io.sr import read_sr
from medvit.models.classifier import load_classifier
from medvit.predict.run import Predictor  # noqa: F401 - the import path the docs name
from tracking.conftest import LABELS

THRESHOLDS = [0.3, 0.5, 0.6]


def _medical_inputs(root: Path) -> Path:
    """Two real DICOM files (one named after its patient), a PNG, a DICOM without pixels, junk and an empty file."""
    root.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm", download=False), root / "ct.dcm")
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
    ds.PatientID = "MRN4471"
    (root / "sub").mkdir()
    ds.save_as(root / "sub" / "MRN4471_chest.dcm")
    cv2.imwrite(str(root / "xray.png"), (np.random.default_rng(0).random((40, 60)) * 255).astype(np.uint8))
    shutil.copy(get_testdata_file("rtplan.dcm", download=False), root / "plan.dcm")
    (root / "notes.txt").write_text("not an image")
    (root / "empty.dcm").write_bytes(b"")
    (root / ".hidden.dcm").write_bytes(b"skipped like ingest skips it")
    return root


def _expected_scores(model_dir: Path, path: Path) -> np.ndarray:
    """The score of one DICOM file computed directly: the model's preprocessing, then the classifier."""
    import torch

    model, meta = load_classifier(model_dir)
    prep = Preprocessor.from_json(meta["preprocess"])
    _, frames = read_frames(path, prep.dicom_options)
    (_, image), = list(frames)
    with torch.no_grad():
        return torch.sigmoid(model(prep.to_model_input(prep.to_cache(image)))).double().numpy()[0]


def test_predict_a_medical_folder_from_the_registry(registered: Callable[[str], dict], tmp_path: Path) -> None:
    registered("medical")
    inputs = _medical_inputs(tmp_path / "in")
    tiny = pydicom.dcmread(inputs / "ct.dcm")  # 8 x 8 pixels: under half the 32 px model input per side
    tiny.PixelData = tiny.pixel_array[:8, :8].tobytes()
    tiny.Rows = tiny.Columns = 8
    tiny.SOPInstanceUID = tiny.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.99999.8.8"
    tiny.save_as(inputs / "tiny.dcm")
    out = tmp_path / "out"
    assert main(["predict", "--model", "models:/medvit-medical@candidate", "--input", str(inputs), "--out", str(out),
                 "--sr", "--overlays", "--workers", "2", "--batch-size", "2"]) == 0
    table = pd.read_parquet(out / "predictions.parquet")
    csv = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len(csv) == len(table) == 7  # every non-hidden file has exactly one row (single-frame files)
    errors = dict(zip(table["source"], table["error"]))
    assert errors["tiny.dcm"] == "too small: 8x8 pixels, at least half the model's input size 32 per side"
    assert errors["plan.dcm"].startswith("no pixel data")
    assert errors["notes.txt"] == "not DICOM"
    assert errors["empty.dcm"] == "empty file"
    assert errors["ct.dcm"] == errors["xray.png"] == ""
    assert "sub/MRN4471_chest.dcm" not in errors  # the path holds its PatientID: pseudonymised as ingest does
    mr = table[table["source"].str.startswith("pseudo:")]
    assert len(mr) == 1 and mr["error"].iloc[0] == ""
    assert set(table["model"]) == {"medvit-medical"} and set(table["version"]) == {"1"}

    model_dir = next((out / ".model").glob("*/artifacts/classifier"))
    ct = table[table["source"] == "ct.dcm"].iloc[0]
    scores = np.array([ct[f"score:{n}"] for n in LABELS])
    np.testing.assert_allclose(scores, _expected_scores(model_dir, inputs / "ct.dcm"), atol=1e-6)
    assert [ct[f"label:{n}"] for n in LABELS] == [int(s >= t) for s, t in zip(scores, THRESHOLDS)]
    bad = table[table["error"] != ""]
    assert bad[[f"score:{n}" for n in LABELS]].isna().all().all() and bad[[f"label:{n}" for n in LABELS]].isna().all().all()

    sr = read_sr(out / ct["sr"])  # highdicom round trip of the SR written for ct.dcm
    source = pydicom.dcmread(inputs / "ct.dcm")
    assert sr.referenced_sop_instance_uid == source.SOPInstanceUID
    assert (sr.model_name, sr.model_version) == ("medvit-medical", "1")
    assert sr.scores == pytest.approx(dict(zip(LABELS, scores)))
    assert sr.findings == {n: bool(s >= t) for n, s, t in zip(LABELS, scores, THRESHOLDS)}
    assert table.loc[table["source"] == "xray.png", "sr"].iloc[0] == "not written: not a DICOM file"
    assert len(list((out / "sr").glob("*.dcm"))) == 2
    assert sorted(p.stem for p in (out / "overlays").glob("*.png")) == sorted(table.loc[table["error"] == "", "id"])
    written = " ".join(p.read_text(errors="ignore") for p in out.glob("predictions.*"))
    assert "MRN4471" not in written


def _scene(path: Path, bands: int = 3, height: int = 64, width: int = 96) -> Path:
    rng = np.random.default_rng(1)
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=bands, dtype="uint16",
                       crs="EPSG:32633", transform=Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4200000.0)) as ds:
        ds.write(rng.integers(0, 10000, (bands, height, width), dtype=np.uint16))
    return path


def test_predict_scenes_writes_maps_that_match_the_table(registered: Callable[[str], dict], tmp_path: Path) -> None:
    registered("satellite")
    inputs = tmp_path / "scenes"
    inputs.mkdir()
    _scene(inputs / "alpha.tif")
    _scene(inputs / "grey.tif", bands=1)
    (inputs / "b").mkdir()  # a second scene called alpha, in a subfolder (a folder-per-scene layout)
    _scene(inputs / "b" / "alpha.tif", height=32, width=64)
    out = tmp_path / "out"
    assert main(["predict", "--model", "models:/medvit-satellite/1", "--input", str(inputs), "--out", str(out),
                 "--workers", "2"]) == 0
    table = pd.read_parquet(out / "predictions.parquet")
    assert table.loc[table["source"] == "grey.tif", "error"].iloc[0].startswith("band count mismatch")
    chips = table[table["source"] == "alpha.tif"]
    assert len(chips) == 6 and (chips["error"] == "").all() and (chips["crs"] == "EPSG:32633").all()
    with rasterio.open(out / "maps" / "alpha.scores.tif") as ds:
        assert ds.crs.to_epsg() == 32633 and (ds.count, ds.height, ds.width) == (3, 2, 3)
        assert ds.transform == Affine(320.0, 0.0, 500000.0, 0.0, -320.0, 4200000.0)
        assert list(ds.descriptions) == LABELS
        grid = ds.read()
    for _, row in chips.iterrows():
        y, x = (int(v) for v in row["id"].split("_")[-2:])
        np.testing.assert_array_equal(grid[:, y // 32, x // 32], np.float32([row[f"score:{n}"] for n in LABELS]))
    features = json.loads((out / "maps" / "alpha.positive.geojson").read_text())["features"]
    positive = {(r["id"], n) for _, r in chips.iterrows() for n in LABELS if r[f"label:{n}"] == 1}
    assert {(f["properties"]["id"], f["properties"]["label"]) for f in features} == positive
    assert not (out / "maps" / "grey.scores.tif").exists()
    # The subfolder's alpha keeps its own map, at its path under --input.
    other = table[table["source"] == "b/alpha.tif"]
    with rasterio.open(out / "maps" / "b" / "alpha.scores.tif") as ds:
        assert (ds.count, ds.height, ds.width) == (3, 1, 2)
        np.testing.assert_array_equal(ds.read()[:, 0, :].T, other[[f"score:{n}" for n in LABELS]].to_numpy(np.float32))


def test_predict_with_a_local_model_folder(registered: Callable[[str], dict], tmp_path: Path) -> None:
    registered("medical")
    inputs = _medical_inputs(tmp_path / "in")
    assert main(["predict", "--model", "models:/medvit-medical/1", "--input", str(inputs / "ct.dcm"),
                 "--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    local = next((tmp_path / "a" / ".model").iterdir())
    assert main(["predict", "--model", str(local), "--input", str(inputs / "ct.dcm"), "--out", str(tmp_path / "b"),
                 "--workers", "1"]) == 0
    a, b = (pd.read_csv(tmp_path / d / "predictions.csv") for d in ("a", "b"))
    np.testing.assert_array_equal(a[[f"score:{n}" for n in LABELS]], b[[f"score:{n}" for n in LABELS]])
    assert a["version"].iloc[0] == 1 and b["version"].iloc[0] == "local"


def test_predict_with_the_finetune_folder_and_evaluates_thresholds(registered: Callable[[str], dict],
                                                                    tmp_path: Path) -> None:
    """The pipeline's predict stage: models/<d> + reports/<d>/thresholds.json, the same answers as the registry."""
    registered("medical")
    inputs = _medical_inputs(tmp_path / "in")
    assert main(["predict", "--model", "models:/medvit-medical/1", "--input", str(inputs), "--out",
                 str(tmp_path / "a"), "--workers", "1"]) == 0
    assert main(["predict", "--model", str(tmp_path / "models"), "--thresholds",
                 str(tmp_path / "reports" / "thresholds.json"), "--input", str(inputs), "--out", str(tmp_path / "b"),
                 "--workers", "1"]) == 0
    a, b = (pd.read_csv(tmp_path / d / "predictions.csv").sort_values(["source", "id"]).reset_index(drop=True)
            for d in ("a", "b"))
    cols = [f"score:{n}" for n in LABELS] + [f"label:{n}" for n in LABELS] + ["error"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert (b["version"] == "local").all() and b["label:" + LABELS[0]].notna().any()


def test_thresholds_go_only_with_a_finetune_folder(registered: Callable[[str], dict], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    registered("medical")
    inputs = _medical_inputs(tmp_path / "in")
    thresholds = str(tmp_path / "reports" / "thresholds.json")
    assert main(["predict", "--model", "models:/medvit-medical/1", "--thresholds", thresholds, "--input",
                 str(inputs), "--out", str(tmp_path / "o")]) == 2
    assert "--thresholds goes with a finetune output folder" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "models"), "--input", str(inputs), "--out",
                 str(tmp_path / "o")]) == 2
    assert "--thresholds goes with a finetune output folder" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"label_names": ["a"]}')
    assert main(["predict", "--model", str(tmp_path / "models"), "--thresholds", str(tmp_path / "bad.json"),
                 "--input", str(inputs), "--out", str(tmp_path / "o")]) == 2
    assert "not evaluate's thresholds.json" in capsys.readouterr().err


def test_unknown_alias_and_missing_folder_are_clear_errors(registered: Callable[[str], dict], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    registered("medical")
    inputs = _medical_inputs(tmp_path / "in")
    assert main(["predict", "--model", "models:/medvit-medical@champion", "--input", str(inputs),
                 "--out", str(tmp_path / "o")]) == 2
    assert "champion" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "nope"), "--input", str(inputs), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_batch_size_and_workers_under_one_are_refused_by_the_parser(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--batch-size", "--workers"):
        with pytest.raises(SystemExit) as exited:
            main(["predict", "--model", "m", "--input", str(tmp_path), "--out", str(tmp_path / "o"), flag, "0"])
        assert exited.value.code == 2
        assert f"argument {flag}: 0 is less than 1" in capsys.readouterr().err
