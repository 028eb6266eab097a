"""CheXpert-style labels through the ingest stage: path prefix, uncertainty policy, subgroups, views, bad values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ingest_inputs import ingest_cfg, medical_raw, write_csv
from medical_formats import CHEXPERT_FINDINGS, CHEXPERT_ROOT, PSEUDO, check_counts, chexpert_raw

from medvit.config import parse_params
from medvit.data.manifest import read_manifest
from medvit.errors import UserError
from medvit.ingest import ingest
from medvit.ingest.chexpert import match_chexpert_labels
from medvit.ingest.labels import finding_values

POLICY = {"ones": 1.0, "zeros": 0.0, "ignore": math.nan}


def _keys(raw: Path, labels: Path) -> list[str]:
    return sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file() and p != labels)


def _expected(cell: str, uncertain: str, blank: str) -> float:
    return {"1.0": 1.0, "0.0": 0.0, "-1.0": POLICY[uncertain], "": POLICY[blank]}[cell]


def test_chexpert_end_to_end_detected_from_the_header(tmp_path: Path) -> None:
    raw, rows = chexpert_raw(tmp_path)
    labels = raw / "train.csv"
    _, cfg = ingest_cfg(tmp_path, medical={"image_size": 32, "uncertain": "ignore", "blank": "ignore"})
    assert cfg.medical.label_format is None
    out = tmp_path / "cache"
    rep = ingest("medical", raw, labels, out, cfg)     # --raw at CheXpert-v1.0-small: the Path prefix is dropped
    check_counts(_keys(raw, labels), out)
    assert rep["n_ingested"] == 20 and rep["n_filtered"] == 0 and rep["labels_without_images"] == 1
    rejects = dict(pd.read_csv(out / "rejects.csv").itertuples(index=False))
    assert list(rejects.values()) == ["no labels: not listed in the labels file"]   # patient00098's image

    manifest = read_manifest(out)
    frame = manifest.frame
    assert manifest.label_names == CHEXPERT_FINDINGS   # "No Finding" is not a label
    y = manifest.labels()
    assert np.isnan(y).any() and (y[np.isfinite(y)] == y[np.isfinite(y)].round()).all()
    by_id = {PSEUDO.sample(r["Path"].removeprefix(CHEXPERT_ROOT + "/"), 0): r for _, r in rows.iterrows()}
    for i, sample in enumerate(frame["id"]):
        row = by_id[sample]
        want = [_expected(row[f], "ignore", "ignore") for f in CHEXPERT_FINDINGS]
        np.testing.assert_array_equal(y[i], np.array(want, np.float32))
        # The group is the patient folder; the subgroup columns come from the CSV unless the header has them.
        assert frame.loc[i, "group"] == PSEUDO.patient(row["Path"].split("/")[2])
        assert frame.loc[i, "sex"] == {"Male": "M", "Female": "F", "Unknown": "unknown"}[row["Sex"]]
        age = int(row["Age"])
        assert frame.loc[i, "age_band"] == ("90+" if age >= 90 else f"{age // 10 * 10}-{age // 10 * 10 + 9}")
        csv_view = row["AP/PA"] or ("LATERAL" if row["Frontal/Lateral"] == "Lateral" else "unknown")
        want_view = "LL" if row["Path"].endswith("patient00001/study1/view1_frontal.dcm") else csv_view
        assert frame.loc[i, "view"] == want_view
    assert set(frame["view"]) == {"AP", "PA", "LATERAL", "LL", "RL"}
    assert "90+" in set(frame["age_band"]) and "unknown" in set(frame["sex"])
    assert frame["source"].str.startswith("pseudo:").all()   # the paths hold the patient folder
    for path in out.rglob("*"):   # no patient folder name in any output byte
        if path.is_file():
            assert b"patient000" not in path.read_bytes(), path.name
    # Empty manifest cells where unknown; report counts known positives and unknowns.
    text = (out / "manifest.csv").read_text().splitlines()
    assert any(",," in line or line.endswith(",") for line in text[1:])
    for j, f in enumerate(CHEXPERT_FINDINGS):
        assert rep["labels"][f] == int(np.nansum(y[:, j])) and rep["labels_unknown"][f] == int(np.isnan(y[:, j]).sum())


@pytest.mark.parametrize("uncertain", ["ones", "zeros", "ignore"])
@pytest.mark.parametrize("blank", ["zeros", "ignore"])
def test_every_uncertainty_policy(tmp_path: Path, uncertain: str, blank: str) -> None:
    raw, rows = chexpert_raw(tmp_path, n_patients=3)
    files = _keys(raw, raw / "train.csv")
    mcfg = parse_params({"ingest": {"medical": {"uncertain": uncertain, "blank": blank}}}).ingest.medical
    table = match_chexpert_labels(raw / "train.csv", files, raw.name, mcfg)
    assert len(table.by_file) == 6 and table.without_images == 1
    for _, row in rows.iloc[:6].iterrows():
        got, patient = table.by_file[row["Path"].removeprefix(CHEXPERT_ROOT + "/")]
        want = np.array([_expected(row[f], uncertain, blank) for f in CHEXPERT_FINDINGS], np.float32)
        np.testing.assert_array_equal(got, want)
        assert patient == row["Path"].split("/")[2]
    cells = {row[f] for _, row in rows.iterrows() for f in CHEXPERT_FINDINGS}
    assert cells == {"1.0", "0.0", "-1.0", ""}   # the fixture holds every kind of value


def test_paths_relative_to_the_parent_of_the_data_root_match_too(tmp_path: Path) -> None:
    raw, _ = chexpert_raw(tmp_path, n_patients=3)
    files = _keys(tmp_path, raw / "train.csv")
    mcfg = parse_params({}).ingest.medical
    table = match_chexpert_labels(raw / "train.csv", files, tmp_path.name, mcfg)
    assert len(table.by_file) == 6 and all(k.startswith(CHEXPERT_ROOT + "/") for k in table.by_file)


@pytest.mark.parametrize("bad", ["2.0", "yes", "nan"])
def test_a_malformed_label_value_is_fatal_naming_file_row_and_column(tmp_path: Path, bad: str) -> None:
    raw, rows = chexpert_raw(tmp_path, n_patients=3)
    rows.loc[3, "Edema"] = bad
    write_csv(raw / "bad.csv", rows.to_dict("records"))
    _, cfg = ingest_cfg(tmp_path)
    with pytest.raises(UserError, match=r"bad\.csv: column 'Edema' rows 5: not a label value; write 1\.0"):
        ingest("medical", raw, raw / "bad.csv", tmp_path / "out", cfg)
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_finding_values_maps_each_policy() -> None:
    frame = pd.DataFrame({"a": ["1.0", "0.0", "-1.0", "", " 1 ", "-1"]})
    for uncertain in POLICY:
        for blank in ("zeros", "ignore"):
            got = finding_values(frame, ["a"], Path("x.csv"), uncertain, blank)[:, 0]
            want = [1.0, 0.0, POLICY[uncertain], POLICY[blank], 1.0, POLICY[uncertain]]
            np.testing.assert_array_equal(got, np.array(want, np.float32))


def test_label_names_select_columns_and_unknown_names_are_fatal(tmp_path: Path) -> None:
    raw, _ = chexpert_raw(tmp_path, n_patients=3)
    files = _keys(raw, raw / "train.csv")
    mcfg = parse_params({"ingest": {"medical": {"label_names": ["Edema", "No Finding"]}}}).ingest.medical
    table = match_chexpert_labels(raw / "train.csv", files, raw.name, mcfg)
    assert table.label_names == ("Edema", "No Finding")
    mcfg = parse_params({"ingest": {"medical": {"label_names": ["Edema", "Fracture"]}}}).ingest.medical
    with pytest.raises(UserError, match=r"no column\(s\) \['Fracture'\]"):
        match_chexpert_labels(raw / "train.csv", files, raw.name, mcfg)


def test_views_filter_counts_left_out_files_by_reason(tmp_path: Path) -> None:
    raw, _ = chexpert_raw(tmp_path)
    labels = raw / "train.csv"
    _, cfg = ingest_cfg(tmp_path, medical={"image_size": 32, "views": ["PA", "AP"]})
    out = tmp_path / "cache"
    rep = ingest("medical", raw, labels, out, cfg)
    check_counts(_keys(raw, labels), out)
    # 10 frontals, one of them a DICOM whose header says LL; 10 laterals from the CSV: blank AP/PA (LATERAL)
    # for patients 0, 1, 4, 5, 8, 9 (patient 1's a DICOM without ViewPosition), LL for 2, 6 and RL for 3, 7.
    assert rep["filtered_by_reason"] == {"view LATERAL": 6, "view LL": 3, "view RL": 2}
    assert rep["n_filtered"] == 11 and rep["n_ingested"] == 9 and rep["n_rejected"] == 1
    assert set(read_manifest(out).frame["view"]) == {"PA", "AP"}


def test_views_filter_reads_the_dicom_header_without_a_csv_view(tmp_path: Path) -> None:
    raw = medical_raw(tmp_path / "raw", n_patients=4)   # every DICOM says PA; NIH labels carry no view
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0, medical={"image_size": 32, "views": ["AP"]})
    with pytest.raises(UserError, match=r"nothing was ingested.*left out by filters: \{'view PA': 9\}"):
        ingest("medical", raw, raw / "labels.csv", tmp_path / "o1", cfg)
    _, cfg = ingest_cfg(tmp_path, max_reject_fraction=1.0, medical={"image_size": 32, "views": ["PA"]})
    rep = ingest("medical", raw, raw / "labels.csv", tmp_path / "o2", cfg)
    assert rep["n_filtered"] == 0 and rep["n_ingested"] == 8


def test_views_param_must_be_upper_case() -> None:
    with pytest.raises(Exception, match="upper-case view positions"):
        parse_params({"ingest": {"medical": {"views": ["pa"]}}})
