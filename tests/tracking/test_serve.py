"""Serve round trip: `mlflow models serve -m models:/medvit-medical@candidate` answers /invocations.

One real server (``--env-manager local``, loopback) per test: tensors, raw DICOM bytes
with bad files in the batch, and the request errors (malformed, empty, oversize).
"""

from __future__ import annotations

import base64
import json
import sys
from concurrent.futures import ThreadPoolExecutor
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import psutil
import pytest
import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))  # the ingest tests' input writers

from ingest_inputs import write_dicom, write_scene  # noqa: E402

from medvit.data.preprocess import Preprocessor  # noqa: E402
from medvit.data.transforms import eval_transform  # noqa: E402
from medvit.models.classifier import load_classifier  # noqa: E402
from medvit.tracking.serving import MAX_BYTES_ENV  # noqa: E402


LOAD_REQUESTS = 60  # the suite's size; benchmarks would run ~1,000


def _files_body(*files: bytes) -> bytes:
    return json.dumps({"dataframe_split": {"columns": ["file"],
                                           "data": [[base64.b64encode(f).decode()] for f in files]}}).encode()


def _rss(proc: object) -> int:
    """Resident memory of a server process and its workers, bytes."""
    root = psutil.Process(proc.pid)  # type: ignore[attr-defined]
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


def _strict(text: bytes) -> dict:
    """JSON as RFC 8259 has it: a bare NaN or Infinity token fails."""
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, _strict(r.read())
    except urllib.error.HTTPError as err:
        return err.code, _strict(err.read())


@pytest.mark.slow
def test_served_candidate_scores_dicom_bytes_and_answers_request_errors(
    tmp_path: Path, dicom_model: dict, dicom_scores: Callable[[Path], np.ndarray], model_server: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MAX_BYTES_ENV, "200000")
    url = model_server("models:/medvit-medical@candidate")
    names = dicom_model["label_names"]

    # Raw files, base64 in a dataframe_split: a good DICOM, a text file and an empty cell in one batch.
    write_dicom(tmp_path / "ok.dcm", 3, 1)
    cells = [base64.b64encode(d).decode() for d in ((tmp_path / "ok.dcm").read_bytes(), b"hello", b"")]
    status, body = _post(url, json.dumps({"dataframe_split": {"columns": ["file"], "data": [[c] for c in cells]}}
                                         ).encode())
    assert status == 200
    rows = body["predictions"]
    assert [r["error"] for r in rows] == ["", "not DICOM", "empty file"]
    expected = dicom_scores(tmp_path / "ok.dcm")
    np.testing.assert_allclose([rows[0][f"score:{n}"] for n in names], expected, atol=1e-5)
    assert [rows[0][f"label:{n}"] for n in names] == (expected >= np.array([0.2, 0.5, 0.8])).astype(int).tolist()
    assert rows[0]["model"] == "medvit-medical" and rows[0]["version"] == "1"
    assert all(rows[k][f"label:{names[0]}"] == -1 and rows[k][f"score:{names[0]}"] is None for k in (1, 2))

    # Today's tensor input still works: scores as the finetune classifier on the evaluation transform.
    images = np.random.default_rng(1).random((2, 1, 48, 48), dtype=np.float32)
    status, body = _post(url, json.dumps({"inputs": images.tolist()}).encode())
    assert status == 200
    model, meta = load_classifier(tmp_path / "models")
    t = eval_transform(meta["img_size"], meta["mean"], meta["std"])
    with torch.no_grad():
        exp = torch.sigmoid(model(torch.from_numpy(np.stack([t(x) for x in images])))).numpy()
    for row, e in zip(body["predictions"], exp):
        np.testing.assert_allclose([row[f"score:{n}"] for n in names], e, atol=1e-5)
    # A tensor of the wrong channel count is an error row, not a score.
    status, body = _post(url, json.dumps({"inputs": np.zeros((1, 3, 32, 32)).tolist()}).encode())
    assert status == 200 and body["predictions"][0]["error"].startswith("wrong channel count")

    # Request errors: 4xx with a one-line message, never a traceback.
    for payload, code in ((b"{not json", 400), (b"", 400), (b'{"unknown": 1}', 400),
                          (json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1]]}}).encode(), 400),
                          (b"x" * 200001, 413)):
        status, body = _post(url, payload)
        assert status == code, (payload[:20], body)
        assert "\n" not in body["message"] and "Traceback" not in json.dumps(body), body
        assert "stack_trace" not in body
    # The server still answers after the bad requests.
    assert _post(url, json.dumps({"inputs": images.tolist()}).encode())[0] == 200


@pytest.mark.slow
def test_bounded_load_with_bad_requests_crashes_nothing_and_keeps_memory(
    tmp_path: Path, dicom_model: dict, dicom_scores: Callable[[Path], np.ndarray], model_server: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MAX_BYTES_ENV, "100000")
    url = model_server("models:/medvit-medical@candidate")
    (server,) = model_server.processes  # type: ignore[attr-defined]
    names = dicom_model["label_names"]
    write_dicom(tmp_path / "ok.dcm", 4, 0)
    ok = (tmp_path / "ok.dcm").read_bytes()
    write_scene(tmp_path / "rgb.tif", np.ones((3, 16, 16), np.uint16), 0)
    tif = (tmp_path / "rgb.tif").read_bytes()
    prep = Preprocessor.from_json(dicom_model["preprocess"])
    expected = dicom_scores(tmp_path / "ok.dcm")
    # (body, status, the error of its one row) for every request kind; good files are most of the load.
    kinds = [(_files_body(ok), 200, ""), (_files_body(ok[:-1000]), 200, prep.decode(ok[:-1000])),
             (_files_body(b"\x00" * 300), 200, "not DICOM"), (_files_body(tif), 200, prep.decode(tif)),
             (b"", 400, "empty request body"), (_files_body(ok * 30), 413, "over the limit"),
             (_files_body(ok), 200, "")]
    assert kinds[1][2].startswith("truncated or corrupt") and isinstance(kinds[3][2], str)

    def call(k: int) -> tuple[int, int, dict]:
        kind = k % len(kinds) if k % 3 else 0  # every third request, and kinds 0 and 6, a good file
        return kind, *_post(url, kinds[kind][0])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(call, range(12)))  # warm-up
        warm = _rss(server)
        workers = {p.pid for p in psutil.Process(server.pid).children(recursive=True)}  # uvicorn under mlflow
        assert workers
        results = list(pool.map(call, range(LOAD_REQUESTS)))
    assert server.poll() is None, "the server died"
    # A worker that crashed and was restarted would have a new process id.
    assert {p.pid for p in psutil.Process(server.pid).children(recursive=True)} == workers, "a server process died"
    assert {kind for kind, *_ in results} == set(range(len(kinds)))
    for kind, status, body in results:
        assert status == kinds[kind][1], (kind, body)
        if status != 200:
            assert "\n" not in body["message"] and kinds[kind][2] in body["message"], body
            continue
        (row,) = body["predictions"]
        assert row["error"] == kinds[kind][2]
        if row["error"] == "":
            np.testing.assert_allclose([row[f"score:{n}"] for n in names], expected, atol=1e-5)
    assert _rss(server) <= 1.2 * warm
