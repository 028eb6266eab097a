"""The served pyfunc on raw files: parity with the finetune stage's scores, ingest's reject reasons, tensor checks."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Callable

import cv2
import mlflow
import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))  # the ingest tests' input writers

from ingest_inputs import KEY, SAT, ingest_cfg, medical_raw, satellite_raw, write_dicom  # noqa: E402

from medvit.cli import main  # noqa: E402
from medvit.data.scores import read_scores  # noqa: E402
from medvit.deid import KEY_ENV, Pseudonymizer  # noqa: E402
from medvit.ingest import ingest  # noqa: E402
from medvit.tracking.registry import log_servable_model  # noqa: E402

TINY = {
    "model": "deit3_small_patch16_384", "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2},
    "weights": "none", "allow_random_init": True, "img_size": 32, "freeze_blocks": 1,
    "head": {"hidden_dim": 16, "dropout": 0.1}, "epochs": 1, "batch_size": 8, "lr": 0.003, "warmup_epochs": 0.5,
    "domains": {"medical": {}, "satellite": {}},
}


def _pipeline(tmp_path: Path, domain: str) -> tuple[Path, Path, Path]:
    """Real ingest and finetune stages on the ingest tests' raw inputs: (raw, cache, model folder)."""
    if domain == "medical":
        raw, labels = medical_raw(tmp_path / "raw", n_patients=10), tmp_path / "raw" / "labels.csv"
    else:
        raw, labels = satellite_raw(tmp_path / "raw", n_scenes=5), tmp_path / "raw" / "labels"
    _, cfg = ingest_cfg(tmp_path, workers=1, satellite=SAT)
    ingest(domain, raw, labels, tmp_path / "cache", cfg)
    params = tmp_path / "finetune.yaml"
    params.write_text(yaml.safe_dump({"finetune": TINY}))
    assert main(["finetune", "--domain", domain, "--cache", str(tmp_path / "cache"), "--out",
                 str(tmp_path / "models"), "--params", str(params)]) == 0
    return raw, tmp_path / "cache", tmp_path / "models"


def _served(model_dir: Path, domain: str) -> mlflow.pyfunc.PyFuncModel:
    meta = json.loads((model_dir / "meta.json").read_text())
    with mlflow.start_run():
        info = log_servable_model(model_dir, meta["label_names"], [0.5] * len(meta["label_names"]), "fixed",
                                  registered_model=f"medvit-{domain}")
    return mlflow.pyfunc.load_model(info.model_uri)


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["medical", "satellite"])
def test_scores_from_raw_files_equal_the_finetune_stage_scores(
    domain: str, tmp_path: Path, tracking: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    raw, cache, model_dir = _pipeline(tmp_path, domain)
    meta = json.loads((model_dir / "meta.json").read_text())
    assert meta["preprocess"] == {**json.loads((cache / "preprocess.json").read_text()),
                                  "model": meta["preprocess"]["model"]}
    assert meta["preprocess"]["model"]["img_size"] == 32
    model = _served(model_dir, domain)

    files = sorted(p for p in raw.rglob("*") if p.is_file() and p.parent.name != "labels" and p.suffix != ".csv")
    out = model.predict(pd.DataFrame({"file": [p.read_bytes() for p in files], "name": [p.name for p in files]}))
    keys = [p.relative_to(raw).as_posix() for p in files]
    if domain == "medical":  # ids are keyed pseudonyms of the file path (one frame each)
        pseudo = Pseudonymizer(KEY.encode())
        ids = [pseudo.sample(keys[i], 0) if e == "" else "" for i, e in zip(out["input"], out["error"])]
    else:  # chip ids from the scene name, as ingest's
        ids = out["id"].tolist()
    served = {i: row for i, row in zip(ids, out.to_dict("records")) if i}

    names = meta["label_names"]
    compared = 0
    for split in ("val", "test"):
        table = read_scores(model_dir / "scores" / f"{split}.csv")
        for sid, expected in zip(table.ids, table.scores):
            row = served[sid]
            got = np.array([row[f"score:{n}"] for n in names])
            np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0, err_msg=sid)
            compared += 1
    assert compared == len(pd.read_csv(cache / "manifest.csv").query("split != 'train'"))

    # A file ingest rejected is an error row with ingest's reason (the labels' absence aside).
    rejects = pd.read_csv(cache / "rejects.csv")
    reasons = {r for r in rejects["reason"] if not r.startswith("no labels")}
    errors = {e for e in out["error"] if e and not e.startswith("too much nodata")}
    assert errors == reasons and len(reasons) >= 3
    bad = out[out["error"] != ""]
    assert bad[[c for c in out.columns if c.startswith("score:")]].isna().all().all()
    assert (bad[[c for c in out.columns if c.startswith("label:")]] == -1).all().all()
    assert set(out["model"]) == {f"medvit-{domain}"}
    if domain == "satellite":  # one row per chip of every scene, with its bounds in the scene CRS
        assert (out.loc[out["error"] == "", "bounds"].str.split().str.len() == 4).all()
        assert out["id"].str.startswith("tile0_").sum() == 16


def test_raw_files_and_tensors_with_errors_in_the_batch(tmp_path: Path, dicom_model: dict,
                                                        dicom_scores: Callable[[Path], np.ndarray]) -> None:
    model = mlflow.pyfunc.load_model("models:/medvit-medical@candidate")
    write_dicom(tmp_path / "ok.dcm", 1, 0)
    write_dicom(tmp_path / "burned.dcm", 2, 0, burned_in="YES")
    no_pixels = pydicom.dcmread(tmp_path / "ok.dcm")
    del no_pixels.PixelData
    no_pixels.save_as(tmp_path / "nopix.dcm")
    tiny = pydicom.dcmread(tmp_path / "ok.dcm")  # a 1 x 1 radiograph: upscaled, it would score like any other
    tiny.Rows = tiny.Columns = 1
    tiny.PixelData = np.uint16([700]).tobytes()
    tiny.save_as(tmp_path / "tiny.dcm")
    ok = (tmp_path / "ok.dcm").read_bytes()
    files = [ok, b"plain text, not DICOM", (tmp_path / "burned.dcm").read_bytes(), (tmp_path / "nopix.dcm").read_bytes(),
             b"", ok[:-1000],  # pixel data cut short
             (tmp_path / "tiny.dcm").read_bytes(), cv2.imencode(".png", np.full((1, 1), 200, np.uint8))[1].tobytes(),
             cv2.imencode(".png", np.full((15, 40), 200, np.uint8))[1].tobytes()]
    out = model.predict(pd.DataFrame({"file": files}))
    assert out["input"].tolist() == list(range(9))
    assert out["error"][0] == "" and out["error"][1] == "not DICOM"
    assert out["error"][2].startswith("burned-in annotation") and out["error"][3].startswith("no pixel data")
    assert out["error"][4] == "empty file" and out["error"][5].startswith("truncated or corrupt")
    # Too small for the 32 px model (a side under 16 px): an error row, not a score.
    assert out["error"][6].startswith("too small: 1x1 pixels") and out["error"][7].startswith("too small: 1x1 pixels")
    assert out["error"][8].startswith("too small: 15x40 pixels")
    assert out.loc[6:8, [f"score:{n}" for n in dicom_model["label_names"]]].isna().all().all()
    expected = dicom_scores(tmp_path / "ok.dcm")
    got = out.loc[0, [f"score:{n}" for n in dicom_model["label_names"]]].to_numpy(float)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert out.loc[0, [f"label:{n}" for n in dicom_model["label_names"]]].tolist() == (
        (expected >= np.array([0.2, 0.5, 0.8])).astype(int).tolist())
    assert out["model"][0] == "medvit-medical" and out["version"][0] == "1"
    # Base64 text as `base64 FILE` prints it (lines of 76) decodes like the bytes; text that is not base64 says so.
    wrapped = base64.encodebytes(ok).decode()
    assert "\n" in wrapped
    out = model.predict(pd.DataFrame({"file": [wrapped, "not base64 at all!"]}))
    np.testing.assert_allclose(out.loc[0, [f"score:{n}" for n in dicom_model["label_names"]]].to_numpy(float),
                               expected, atol=1e-6)
    assert out["error"].tolist() == ["", "not base64: a 'file' cell in JSON must be the file's bytes in base64"]

    # Tensors: a good image is scored; too small, non-finite and wrong channel count are error rows.
    rng = np.random.default_rng(0)
    batch = rng.random((3, 1, 40, 40), dtype=np.float32)
    batch[1, 0, 3, 3] = np.nan
    out = model.predict(batch)
    assert out["error"].tolist()[0] == "" and out["error"][1].startswith("non-finite values")
    assert model.predict(rng.random((1, 1, 15, 40), dtype=np.float32))["error"][0].startswith("too small")
    assert model.predict(rng.random((1, 3, 32, 32), dtype=np.float32))["error"][0].startswith("wrong channel count")
    with pytest.raises(mlflow.exceptions.MlflowException, match="binary column 'file'") as refused:
        model.predict(pd.DataFrame({"Doe^Jane MRN4471": [1.0]}))  # a CSV body's first line becomes the columns
    assert "Doe" not in refused.value.message and "MRN4471" not in refused.value.message


def test_a_model_without_preprocess_params_scores_tensors_and_says_so_for_files(
    tmp_path: Path, tracking: str, make_model: Callable[..., dict], make_report: Callable[..., Path],
    register: Callable[..., int],
) -> None:
    make_model()  # meta.json of a model fine-tuned before ingest wrote preprocess.json
    make_report()
    assert register() == 0
    model = mlflow.pyfunc.load_model("models:/medvit-medical@candidate")
    write_dicom(tmp_path / "ok.dcm", 1, 0)
    out = model.predict(pd.DataFrame({"file": [(tmp_path / "ok.dcm").read_bytes()]}))
    assert out["error"][0].startswith("this model version takes cache-scaled tensors only")
    assert model.predict(np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32))["error"][0] == ""
