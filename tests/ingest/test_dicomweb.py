"""``medvit pull dicomweb`` against a real Orthanc with its DICOMweb plugin (QIDO-RS / WADO-RS).

The module's Orthanc holds the medical sample's DICOM files (CR and DX, several transfer syntaxes,
patient ids marked ``PHI...``). Without Orthanc installed the tests fail: CI installs it.
"""

from __future__ import annotations

import errno
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pydicom
import pytest
import requests
from servers import free_port, start_orthanc, stop_server

from medvit.cli import main
from medvit.config import SampleConfig, SampleMedical
from medvit.ingest import dicomweb
from medvit.ingest.dicomweb import (PASSWORD_ENV, TIMEOUT_ENV, TOKEN_ENV, USER_ENV, instance_file_name, parse_query,
                                    pull_dicomweb, redact_url)
from medvit.errors import UserError
from medvit.sample import write_sample

USER, PASSWORD = "medvit", "orthanc-test-secret"


@dataclass(frozen=True)
class Original:
    modality: str
    patient_id: str
    transfer_syntax: str
    pixel_data: bytes


@dataclass(frozen=True)
class Pacs:
    url: str                        # the DICOMweb root
    originals: dict[str, Original]  # by SOP Instance UID


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    work = tmp_path_factory.mktemp("orthanc")
    base, proc = start_orthanc(work, {USER: PASSWORD})
    try:
        cfg = SampleConfig(medical=SampleMedical(n_patients=3, images_per_patient=2, image_size=64, burned_in=0))
        write_sample("medical", work / "sample", cfg)
        originals = {}
        for path in sorted((work / "sample").rglob("*.dcm")):
            r = requests.post(f"{base}/instances", data=path.read_bytes(), auth=(USER, PASSWORD), timeout=30)
            assert r.status_code == 200, r.text
            ds = pydicom.dcmread(path)
            originals[ds.SOPInstanceUID] = Original(ds.Modality, ds.PatientID, ds.file_meta.TransferSyntaxUID,
                                                    ds.PixelData)
        assert len(originals) == 6 and len({o.modality for o in originals.values()}) > 1
        yield Pacs(f"{base}/dicom-web", originals)
    finally:
        stop_server(proc)


@pytest.fixture
def login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USER_ENV, USER)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def _files(out: Path) -> list[str]:
    """Every entry in ``out``, hidden ones included (a half file would show up here)."""
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def _assert_no_phi(text: str, pacs: Pacs) -> None:
    for uid, orig in pacs.originals.items():
        assert uid not in text and orig.patient_id not in text


def test_round_trip_is_byte_identical_and_a_second_pull_downloads_nothing(
        pacs: Pacs, login: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "raw"
    argv = ["pull", "dicomweb", "--url", pacs.url, "--out", str(out)]
    assert main(argv) == 0
    assert "6 instance(s) match" in capsys.readouterr().out
    assert _files(out) == sorted(instance_file_name(uid) for uid in pacs.originals)
    for uid, orig in pacs.originals.items():
        assert (out / instance_file_name(uid)).read_bytes()[128:132] == b"DICM"  # Part 10 (PS3.10 7.1)
        ds = pydicom.dcmread(out / instance_file_name(uid))
        assert ds.SOPInstanceUID == uid
        assert ds.file_meta.TransferSyntaxUID == orig.transfer_syntax
        assert ds.PixelData == orig.pixel_data
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "0 downloaded, 6 already in" in second
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing rewritten

    gone = instance_file_name(next(iter(pacs.originals)))
    (out / gone).unlink()
    assert main(argv) == 0
    assert "1 downloaded, 5 already in" in capsys.readouterr().out
    assert _files(out) == sorted(stamps)
    _assert_no_phi(second + caplog.text, pacs)


@pytest.mark.parametrize("query", [["Modality=CR"], ["PatientID=PHIPID00001"], ["Modality=DX", "PatientID=PHIPID00001"]])
def test_query_filters_select_exactly_the_matching_instances(pacs: Pacs, login: None, tmp_path: Path,
                                                             query: list[str]) -> None:
    filters = parse_query(query)
    keys = {"Modality": "modality", "PatientID": "patient_id"}
    expected = {instance_file_name(uid) for uid, o in pacs.originals.items()
                if all(getattr(o, keys[k]) == v for k, v in filters.items())}
    assert 0 < len(expected) < len(pacs.originals)  # the filter really selects a subset
    result = pull_dicomweb(pacs.url, filters, tmp_path / "raw")
    assert set(_files(tmp_path / "raw")) == expected
    assert (result.matched, result.downloaded, result.skipped) == (len(expected), len(expected), 0)


def _run_failing(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0, err
    return err


def test_wrong_password_names_the_url_and_writes_nothing(pacs: Pacs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(USER_ENV, USER)
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password-123")
    err = _run_failing(["pull", "dicomweb", "--url", pacs.url, "--query", "PatientID=PHIPID00001",
                        "--out", str(tmp_path / "raw")], capsys)
    assert f"DICOMweb server {pacs.url} refused the credentials (HTTP 401)" in err
    assert USER_ENV in err and "wrong-password-123" not in err and "PHIPID00001" not in err
    assert _files(tmp_path / "raw") == []


def test_credentials_in_the_url_are_refused_and_not_shown(pacs: Pacs, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with_creds = pacs.url.replace("http://", f"http://{USER}:{PASSWORD}@")
    err = _run_failing(["pull", "dicomweb", "--url", with_creds, "--out", str(tmp_path / "raw")], capsys)
    assert f"use {pacs.url} and set {USER_ENV}" in err and PASSWORD not in err
    assert _files(tmp_path / "raw") == []


def test_server_down_names_the_url(login: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    err = _run_failing(["pull", "dicomweb", "--url", url, "--out", str(tmp_path / "raw")], capsys)
    assert f"cannot reach DICOMweb server {url}" in err
    assert _files(tmp_path / "raw") == []


def test_timeout_names_the_url(login: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(TIMEOUT_ENV, "0.3")
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web"
        err = _run_failing(["pull", "dicomweb", "--url", url, "--out", str(tmp_path / "raw")], capsys)
    assert f"DICOMweb server {url} did not answer within 0.3 s" in err and TIMEOUT_ENV in err
    assert _files(tmp_path / "raw") == []


class _Forbidden(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_forbidden_names_the_url_and_the_token_is_sent_as_bearer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(USER_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.setenv(TOKEN_ENV, "tok-123")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Forbidden)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
        err = _run_failing(["pull", "dicomweb", "--url", url, "--out", str(tmp_path / "raw")], capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert f"DICOMweb server {url} denied access (HTTP 403)" in err and "tok-123" not in err
    assert _Forbidden.seen and set(_Forbidden.seen) == {"Bearer tok-123"}
    assert _files(tmp_path / "raw") == []


def test_a_failed_instance_leaves_no_half_file_and_the_next_pull_resumes(
        pacs: Pacs, login: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "raw"
    real_write = dicomweb.write_instance
    calls = []
    lock = threading.Lock()

    def write_half_then_fail(dataset: pydicom.Dataset, path: Path) -> None:
        with lock:
            calls.append(path)
            n = len(calls)
        real_write(dataset, path)
        if n == 3:  # the disk fills up halfway through the third file
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setenv("MEDVIT_DICOMWEB_CONNECTIONS", "2")
    monkeypatch.setattr(dicomweb, "write_instance", write_half_then_fail)
    with pytest.raises(UserError, match="cannot write .*: No space left on device"):
        pull_dicomweb(pacs.url, {}, out)
    assert not calls[2].exists()  # the temporary of the failed file is gone
    written = _files(out)
    assert 2 <= len(written) < 6 and all(not name.startswith(".") for name in written)
    by_name = {instance_file_name(uid): orig for uid, orig in pacs.originals.items()}
    for name in written:  # whatever is there is complete
        assert pydicom.dcmread(out / name).PixelData == by_name[name].pixel_data

    monkeypatch.undo()
    monkeypatch.setenv(USER_ENV, USER)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    stale = out / f".{next(iter(by_name))}.k1ll3d.tmp"  # what a SIGKILLed pull leaves behind
    stale.write_bytes(b"\0" * 100)
    result = pull_dicomweb(pacs.url, {}, out)
    assert (result.downloaded, result.skipped) == (6 - len(written), len(written))
    assert _files(out) == sorted(by_name)
    for name, orig in by_name.items():
        assert pydicom.dcmread(out / name).PixelData == orig.pixel_data


def test_redact_url_drops_credentials_query_and_fragment() -> None:
    assert redact_url("https://user:pw@pacs.example.org:8443/dicom-web?token=x#f") == "https://pacs.example.org:8443/dicom-web"
    assert redact_url("http://pacs/dicom-web") == "http://pacs/dicom-web"
    assert redact_url("http://u:p@[::1]:8042/dw") == "http://[::1]:8042/dw"
    assert redact_url("http://u:secret@pacs:80x/dw") == "http://pacs/dw"


def test_parse_query_rejects_bad_items_without_echoing_values() -> None:
    assert parse_query(["Modality=CR", "StudyDate=20240101-20241231"]) == {
        "Modality": "CR", "StudyDate": "20240101-20241231"}
    with pytest.raises(UserError, match="number 2 is not KEY=VALUE") as bad:
        parse_query(["Modality=CR", "PHIPID00042"])
    assert "PHIPID00042" not in str(bad.value)
    with pytest.raises(UserError, match="PatientID is given twice") as twice:
        parse_query(["PatientID=PHIPID1", "PatientID=PHIPID2"])
    assert "PHIPID" not in str(twice.value)


@pytest.mark.parametrize(("env", "message"), [
    ({"MEDVIT_DICOMWEB_CONNECTIONS": "2.5"}, "MEDVIT_DICOMWEB_CONNECTIONS='2.5' must be a positive whole number"),
    ({TIMEOUT_ENV: "0"}, f"{TIMEOUT_ENV}='0' must be a positive number"),
    ({TOKEN_ENV: "t", USER_ENV: "u", PASSWORD_ENV: "p"}, f"set either {TOKEN_ENV} or"),
    ({USER_ENV: "u"}, f"set both {USER_ENV} and {PASSWORD_ENV}"),
])
def test_bad_environment_is_refused_before_any_request(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        pull_dicomweb(f"http://127.0.0.1:{free_port()}/dicom-web", {}, tmp_path / "raw", env=env)
    assert _files(tmp_path / "raw") == []


def test_cli_lists_pull_without_domain_or_params(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as top:
        main(["--help"])
    assert top.value.code == 0 and "pull" in capsys.readouterr().out
    with pytest.raises(SystemExit) as sub:
        main(["pull", "--help"])
    out = capsys.readouterr().out
    assert sub.value.code == 0 and "dicomweb" in out and "--query KEY=VALUE" in out
    assert "--domain" not in out and "--params" not in out  # no params.yaml: an operational command
