"""The medical source (DICOM + ChestX-ray14 labels.csv) through the ingest stage, on DICOM files written here."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from ingest_inputs import FINDINGS, KEY, PHI, all_bytes, check_conservation, ingest_cfg, medical_raw, write_csv

from medvit.cli import main
from medvit.data.cache import ShardReader, read_stats
from medvit.data.dataset import CacheDataset
from medvit.data.layout import SUBGROUP_COLUMNS
from medvit.data.manifest import read_manifest
from medvit.deid import Pseudonymizer
from medvit.errors import UserError
from medvit.ingest import demographics, ingest, nih
from medvit.ingest.pixels import letterbox
from medvit.io import dicom
from medvit.io.dicom import DicomOptions, read_frames


def test_cli_medical_end_to_end_deidentified(tmp_path: Path) -> None:
    raw = medical_raw(tmp_path / "raw")
    params, _ = ingest_cfg(tmp_path)
    out = tmp_path / "cache"
    (tmp_path / ".cache.ingest-killed" / "shards").mkdir(parents=True)  # left by a killed run
    assert main(["ingest", "--domain", "medical", "--params", str(params), "--raw", str(raw),
                 "--out", str(out)]) == 0

    for path, data in all_bytes(out):  # no planted PHI in any byte written, incl. the CSV's Patient ID
        for phi in PHI:
            assert phi.encode() not in data, (path.name, phi)
    assert not list(tmp_path.glob(".cache.ingest-*")), "temporary folder left behind"

    report = json.loads((out / "report.json").read_text())
    keys = [p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file() and p.name != "labels.csv"]
    check_conservation(keys, out)
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
    write_csv(raw / "labels.csv", rows)
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0)
    report = ingest("medical", raw, raw / "labels.csv", tmp_path / "out", cfg)
    check_conservation(keys, tmp_path / "out")
    assert report["n_input"] == len(keys) > 80 and report["n_ingested"] > 60
    reasons = set(report["rejects_by_reason"])
    assert reasons <= {"no pixel data", "not DICOM", "truncated or corrupt", "unsupported transfer syntax",
                       "decode failed", "incomplete image header"}, reasons
    assert {"no pixel data", "not DICOM", "truncated or corrupt"} <= reasons


def test_label_file_problems(tmp_path: Path) -> None:
    raw = medical_raw(tmp_path / "raw", n_patients=4)
    labels = raw / "labels.csv"
    rows = list(csv.DictReader(labels.open()))
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0,
                        medical={"image_size": 32, "label_names": ["cardiomegaly"]})
    with pytest.raises(UserError, match=r"unknown label name\(s\) \['effusion', 'nodule'\]"):
        ingest("medical", raw, labels, tmp_path / "o1", cfg)
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0)
    write_csv(tmp_path / "dup.csv", rows + rows[:1])
    with pytest.raises(UserError, match="duplicate 'Image Index' on rows 2, "):
        ingest("medical", raw, tmp_path / "dup.csv", tmp_path / "o2", cfg)
    write_csv(tmp_path / "empty.csv", [{**rows[0], "Finding Labels": ""}, *rows[1:]])
    with pytest.raises(UserError, match="empty 'Finding Labels' on rows 2"):
        ingest("medical", raw, tmp_path / "empty.csv", tmp_path / "o3", cfg)
    write_csv(tmp_path / "extra.csv", rows + [{**rows[0], "Image Index": "gone.dcm"}])
    report = ingest("medical", raw, tmp_path / "extra.csv", tmp_path / "o4", cfg)
    assert report["labels_without_images"] == 1
    write_csv(tmp_path / "none.csv", [{**rows[0], "Image Index": "gone.dcm"}])
    with pytest.raises(UserError, match="matches a file"):
        ingest("medical", raw, tmp_path / "none.csv", tmp_path / "o5", cfg)
    for out in ("o1", "o2", "o3", "o5"):
        assert not (tmp_path / out / "manifest.csv").exists()


def _shards_and_manifest(out: Path) -> tuple[dict[str, bytes], str]:
    shards = {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}
    return shards, (out / "manifest.csv").read_text()


def test_cache_is_identical_whatever_the_worker_count(tmp_path: Path) -> None:
    raw = medical_raw(tmp_path / "raw", n_patients=30)
    _, one = ingest_cfg(tmp_path, workers=1, shard_size=4)
    _, two = ingest_cfg(tmp_path, workers=2, shard_size=4)
    ingest("medical", raw, raw / "labels.csv", tmp_path / "one", one)
    ingest("medical", raw, raw / "labels.csv", tmp_path / "two", two)
    shards, manifest = _shards_and_manifest(tmp_path / "one")
    assert (shards, manifest) == _shards_and_manifest(tmp_path / "two")
    assert len(shards) > 5 and not any(name.startswith(".") for name in shards)
    frame = pd.read_csv(tmp_path / "one" / "manifest.csv")
    assert frame.groupby("shard")["index"].max().max() <= 3  # shard_size caps every shard
    # Each row points at its own file's image.
    reader = ShardReader(tmp_path / "one")
    pseudo = Pseudonymizer(KEY.encode())
    by_id = {pseudo.sample(p.relative_to(raw).as_posix(), 0): p for p in (raw / "images").rglob("PHIPID*.dcm")}
    for sample_id, shard, index in zip(frame["id"], frame["shard"], frame["index"]):
        _, frames = read_frames(by_id[sample_id], DicomOptions())
        expected = letterbox(next(frames)[1], 32)
        np.testing.assert_array_equal(reader.get(int(shard), int(index)), expected)


_real_decode_file = nih.decode_file


def _dies_on_crash_files(task: nih.FileTask) -> object:
    if task.path.endswith("crash.dcm"):
        os._exit(1)  # what a segfaulting decoder does to its worker
    return _real_decode_file(task)


def test_a_file_that_kills_its_worker_is_rejected_and_its_block_rerun(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    raw = medical_raw(tmp_path / "raw", n_patients=20)
    shutil.copy(raw / "images" / "site" / "PHIPID0003_0.dcm", raw / "images" / "site" / "crash.dcm")
    with open(raw / "labels.csv", "a", newline="") as f:
        f.write("crash.dcm,nodule,PHICSV3\n")
    monkeypatch.setattr(nih, "decode_file", _dies_on_crash_files)  # forked workers inherit it
    _, cfg = ingest_cfg(tmp_path, workers=2, shard_size=4)
    out = tmp_path / "out"
    report = ingest("medical", raw, raw / "labels.csv", out, cfg)
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert rejects["images/site/crash.dcm"].startswith("decoder crashed")
    assert report["n_ingested"] == 40  # the crashed file's block-mates were re-run and kept
    keys = [p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file() and p.name != "labels.csv"]
    check_conservation(keys, out)
    assert not [p for p in (out / "shards").iterdir() if p.name.startswith(".")]  # no stray part files
    frame = pd.read_csv(out / "manifest.csv")
    reader = ShardReader(out)
    assert all(reader.get(int(s), int(i)).shape == (1, 32, 32) for s, i in zip(frame["shard"], frame["index"]))


def test_an_unforeseen_error_rejects_the_file_without_its_message(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    raw = medical_raw(tmp_path / "raw")
    real = dicom.read_frames  # called by medvit.data.preprocess, the one decode path ingest takes

    def boom(path: str, options: DicomOptions) -> object:  # a failure no check foresaw, quoting a header value
        if str(path).endswith("burned.dcm"):
            raise KeyError("PHIPID0001")
        return real(path, options)

    monkeypatch.setattr(dicom, "read_frames", boom)
    _, cfg = ingest_cfg(tmp_path, workers=1)
    out = tmp_path / "out"
    report = ingest("medical", raw, raw / "labels.csv", out, cfg)
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert rejects["images/site/burned.dcm"] == "decode failed: unexpected KeyError"
    assert "PHIPID0001" not in (out / "rejects.csv").read_text()
    assert report["n_ingested"] == 24  # every other file still made it


def test_subgroup_columns_from_the_header_and_no_phi_in_outputs_or_logs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    raw = medical_raw(tmp_path / "raw")
    params, _ = ingest_cfg(tmp_path)
    out = tmp_path / "cache"
    with caplog.at_level("DEBUG"):
        assert main(["ingest", "--domain", "medical", "--params", str(params), "--raw", str(raw),
                     "--out", str(out)]) == 0
    captured = capfd.readouterr()
    logs = captured.out + captured.err + caplog.text  # main process and (fd-level) the forked workers
    for text in (logs, (out / "manifest.csv").read_text(), (out / "report.json").read_text(),
                 (out / "rejects.csv").read_text()):
        for phi in (*PHI, "ZZPLANTED^NAME", "1999", "PHIHOSPITAL NORTH"):
            assert phi not in text, phi

    frame = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    columns = list(frame.columns)
    assert columns[-len(FINDINGS) - len(SUBGROUP_COLUMNS):-len(FINDINGS)] == list(SUBGROUP_COLUMNS)
    pseudo = Pseudonymizer(KEY.encode())
    by_patient = {pseudo.patient(f"PHICSV{p}"): p for p in range(12)}
    for group, sex, band, view, maker, model, site in frame[["group", *SUBGROUP_COLUMNS]].itertuples(index=False):
        p = by_patient[group]
        age = 20 + 7 * p % 80  # the header's PatientAge (tests/ingest/ingest_inputs.py)
        assert sex == ("F" if p % 2 else "M")
        assert band == ("90+" if age >= 90 else f"{age // 10 * 10}-{age // 10 * 10 + 9}")
        assert (view, maker, model) == ("PA", "Acme Imaging", "XR-1")
        assert site == demographics.site("PHIHOSPITAL NORTH" if p % 3 == 0 else "PHIHOSPITAL", pseudo)
    assert frame["site"].nunique() == 2 and frame["site"].str.fullmatch(r"H[0-9a-f]{16}").all()
