"""MIMIC-CXR layout through the ingest stage: string ids with leading zeros, metadata join, views, bad rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ingest_inputs import ingest_cfg, write_csv
from medical_formats import MIMIC_FINDINGS, PSEUDO, check_counts, mimic_raw, mimic_study, write_jpeg

from medvit.data.manifest import read_manifest
from medvit.errors import UserError
from medvit.ingest import ingest
from medvit.ingest.mimic import image_key

META = "mimic-cxr-2.0.0-metadata.csv.gz"


def _keys(raw: Path) -> list[str]:
    return sorted(p.relative_to(raw).as_posix() for p in (raw / "files").rglob("*") if p.is_file())


def test_image_key_keeps_ids_as_strings() -> None:
    assert image_key("01000032", "50414267", "02aa", ".jpg") == "p01/p01000032/s50414267/02aa.jpg"


def test_mimic_end_to_end(tmp_path: Path) -> None:
    raw, images = mimic_raw(tmp_path / "mimic")
    write_jpeg(raw / "files/p01/p01000777/s51111111/dddddddd.jpg", 9)   # a subject no CSV names
    _, cfg = ingest_cfg(tmp_path, medical={"image_size": 32, "label_format": "mimic", "metadata": META,
                                           "uncertain": "ones", "blank": "ignore"})
    out = tmp_path / "cache"
    rep = ingest("medical", raw, raw / "mimic-cxr-2.0.0-chexpert.csv", out, cfg)
    check_counts(_keys(raw), out)
    assert rep["n_ingested"] == 16 and rep["labels_without_images"] == 1
    assert set(pd.read_csv(out / "rejects.csv")["reason"]) == {"no labels: not listed in the labels file"}
    # The image without a metadata row, the one whose study has no labels, the one of an unknown subject.
    assert rep["n_rejected"] == 3

    manifest = read_manifest(out)
    frame, y = manifest.frame, manifest.labels()
    assert manifest.label_names == MIMIC_FINDINGS
    by_id = {PSEUDO.sample(rel, 0): ids for rel, ids in images.items()}
    for i, sample in enumerate(frame["id"]):
        subject, study = by_id[sample]
        assert subject.startswith("0")   # the fixture's ids keep their leading zero
        assert frame.loc[i, "group"] == PSEUDO.patient(subject)
        want = [{"1.0": 1.0, "0.0": 0.0, "-1.0": 1.0, "": math.nan}[c] for c in mimic_study(subject, study)]
        np.testing.assert_array_equal(y[i], np.array(want, np.float32))
    assert sorted(frame["view"].value_counts().items()) == [("LATERAL", 7), ("PA", 9)]
    assert frame["source"].str.startswith("pseudo:").all()   # the paths hold the subject id
    subjects = {ids[0] for ids in images.values()} | {"01000099", "01000777"}
    for path in out.rglob("*"):   # no subject id in any output byte (the split group is its pseudonym)
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in subjects), path.name
    assert np.isnan(y).any() and rep["labels_unknown"] == {n: int(np.isnan(y[:, j]).sum())
                                                           for j, n in enumerate(MIMIC_FINDINGS)}


def test_mimic_detected_and_views_filtered(tmp_path: Path) -> None:
    raw, _ = mimic_raw(tmp_path / "mimic")
    _, cfg = ingest_cfg(tmp_path, medical={"image_size": 32, "views": ["PA"]})   # metadata null: the .gz found
    out = tmp_path / "cache"
    rep = ingest("medical", raw, raw / "mimic-cxr-2.0.0-chexpert.csv", out, cfg)   # label_format null
    check_counts(_keys(raw), out)
    # Subject 0's lateral is a DICOM whose header says PA: the header wins over the metadata CSV.
    assert rep["filtered_by_reason"] == {"view LATERAL": 7}
    assert rep["n_ingested"] == 9 and set(read_manifest(out).frame["view"]) == {"PA"}


def test_mimic_label_and_metadata_problems(tmp_path: Path) -> None:
    raw, _ = mimic_raw(tmp_path / "mimic", n_subjects=3)
    labels = raw / "mimic-cxr-2.0.0-chexpert.csv"
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0,
                        medical={"image_size": 32, "label_format": "mimic", "metadata": "meta.csv"})
    with pytest.raises(UserError, match=r"meta\.csv: MIMIC-CXR metadata CSV not found; set ingest.medical.metadata"):
        ingest("medical", raw, labels, tmp_path / "o1", cfg)
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0,
                        medical={"image_size": 32, "label_format": "mimic", "metadata": META})
    rows = pd.read_csv(labels, dtype=str, keep_default_na=False).to_dict("records")
    write_csv(tmp_path / "dup.csv", rows + rows[:1])
    with pytest.raises(UserError, match=r"duplicate \(subject_id, study_id\) on rows 5"):
        ingest("medical", raw, tmp_path / "dup.csv", tmp_path / "o2", cfg)
    write_csv(tmp_path / "bad.csv", [*rows[:2], {**rows[2], "Pneumonia": "yes"}])
    with pytest.raises(UserError, match=r"bad\.csv: column 'Pneumonia' rows 4: not a label value"):
        ingest("medical", raw, tmp_path / "bad.csv", tmp_path / "o3", cfg)
    for out in ("o1", "o2", "o3"):
        assert not (tmp_path / out / "manifest.csv").exists()


def test_reports_and_index_files_are_counted_not_rejected(tmp_path: Path) -> None:
    # MIMIC-CXR ships each study's free-text report as files/p<2>/p<subject>/s<study>.txt, and a wget mirror
    # leaves an index.html in every folder: not images of the layout, so counted in report.json, not inputs
    # (as rejects they would outnumber the images); their paths, which hold subject ids, appear nowhere.
    raw, _ = mimic_raw(tmp_path / "mimic", n_subjects=2)
    subject_dir = raw / "files/p01/p01000001"
    (subject_dir / "s50000001.txt").write_text("FINAL REPORT\n free text")
    (subject_dir / "index.html").write_text("<html></html>")
    (raw / "files/p01/p01000555").mkdir()
    (raw / "files/p01/p01000555/s50000555.txt").write_text("FINAL REPORT")
    (raw / "files/index.html").write_text("<html></html>")
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0, medical={"image_size": 32, "label_format": "mimic"})
    out = tmp_path / "cache"
    rep = ingest("medical", raw, raw / "mimic-cxr-2.0.0-chexpert.csv", out, cfg)
    images = [k for k in _keys(raw) if k.endswith((".dcm", ".jpg"))]
    check_counts(images, out)
    assert rep["files_not_images"] == 4 and rep["n_input"] == len(images) == len(_keys(raw)) - 4
    assert "not DICOM" not in rep["rejects_by_reason"]
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"01000001" not in data and b"01000555" not in data, path.name
