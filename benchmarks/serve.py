"""Benchmark the served model: `mlflow models serve` latency against in-process `pyfunc.predict`, load and faults.

    python benchmarks/serve.py                          # models:/medvit-medical@candidate on MLFLOW_TRACKING_URI
    python benchmarks/serve.py --tiny --seconds 3 --load 100   # a tiny model in a temporary store (smoke run)

One process: the script starts ``mlflow models serve --env-manager local`` on
loopback for the model and also loads it in-process, and sends the same
single-DICOM request (base64 ``file`` column; pydicom's ``CT_small.dcm``, 128 x 128
CT) to both.

1. Latency, interleaved by round: per round, ``--calls`` in-process ``predict``
   calls, then ``--calls`` requests to the server from 1 client (same DICOM bytes;
   the server gets them base64 in JSON, over a keep-alive connection), then
   ``--calls`` calls of the server's own handler in-process (``scoring_server.
   invocations``: JSON in, JSON out, no HTTP); each side's calls run back to back.
   The best (lowest) p50 of the rounds is compared, the worst printed too.
   Target: server p50 <= 1.5x in-process. The answers of both sides are checked
   to agree before timing. The in-process call
   runs on a worker thread, as the scoring server runs it (``asyncio.to_thread``
   in ``mlflow.pyfunc.scoring_server``); the same call on the main thread is
   printed as well, as a figure without a target. On a busy 2-core machine the
   main-thread figure was 10-30x slower (215-390 ms against 8-25 ms for the same
   call on a worker thread): torch's OpenMP pool, started from the main thread,
   spin-waits (``OMP_WAIT_POLICY`` active) while other processes hold the cores;
   with ``OMP_WAIT_POLICY=passive`` the main thread was as fast as a worker thread,
   and at a load of ~5 it was too.
   The first version of this script timed the main thread and so reported the
   server as ~10x *faster* than in-process ``predict``.
2. Concurrency: 1, 2 and 4 clients for ``--seconds`` each; p50/p95/p99 latency,
   requests/s and the error count.
3. Load and faults: ``--load`` requests from 4 clients mixing good files with a
   truncated DICOM, non-DICOM bytes, an oversize body, a 3-band GeoTIFF and an empty
   body; counted: server crashes, good requests answered with other scores than the
   in-process model's, bad ones answered without their reason or status; the
   server's resident memory after the load over its memory after warm-up.

The ``medvit predict`` throughput figure of issue 13 belongs with ``medvit predict``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pydicom.data

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _figures  # after the sys.path line: benchmarks/ is not a package

NAME = "serve"
MAX_BYTES = 8 << 20  # the server's MEDVIT_SERVE_MAX_BYTES here; the oversize request is over it


def tiny_model(root: Path) -> str:
    """Register a tiny medical model (with preprocess params) in a temporary SQLite store; its models:/ URI."""
    import mlflow

    from medvit.data.preprocess import Preprocessor
    from medvit.models.classifier import build_classifier, save_classifier
    from medvit.tracking import registry

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    prep = Preprocessor("medical", 224, dicom={"voi": "header", "window": None, "percentiles": [0.5, 99.5],
                                               "multiframe": "first", "allow_burned_in": False})
    meta = {"model": "deit3_small_patch16_384", "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2},
            "img_size": 64, "in_chans": 1, "label_names": ["a", "b", "c"], "head": {"hidden_dim": 16, "dropout": 0.0},
            "mean": [0.45], "std": [0.25], "freeze_blocks": 1, "weights": "random-init",
            "preprocess": prep.with_model(64, [0.45], [0.25]).to_json()}
    save_classifier(build_classifier(meta), meta, root / "model")
    # Artifacts in the temporary folder too (the default would be ./mlruns of the working directory).
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench-serve", (root / "artifacts").as_uri()))
    with mlflow.start_run() as run:
        info = registry.log_servable_model(root / "model", meta["label_names"], [0.5] * 3, "fixed", None,
                                           "medvit-medical")
    registry.register_version(registry.client(), "medvit-medical", info, run.info.run_id, {}, "benchmark model")
    return "models:/medvit-medical@candidate"


def start_server(uri: str, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MEDVIT_SERVE_MAX_BYTES": str(MAX_BYTES)}
    with open(log, "w") as f:
        proc = subprocess.Popen(["mlflow", "models", "serve", "-m", uri, "--env-manager", "local", "--host",
                                 "127.0.0.1", "--port", str(port), "--workers", "1"], stdout=f,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    sys.exit(f"the server did not start in 300 s:\n{log.read_text()[-3000:]}")


_conn = threading.local()


def post(url: str, body: bytes) -> tuple[int, dict, float]:
    """(status, JSON answer, seconds) of one /invocations request.

    Each client thread keeps one HTTP/1.1 keep-alive connection, as a real client
    (``requests.Session``, a proxy) does; a connection the server closed is reopened
    once, inside the timed span.
    """
    host, port = urllib.parse.urlsplit(url).netloc.rsplit(":", 1)
    headers = {"Content-Type": "application/json"}
    t0 = time.perf_counter()
    for attempt in (0, 1):
        conn = getattr(_conn, "c", None)
        if conn is None:
            conn = _conn.c = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            conn.request("POST", "/invocations", body=body, headers=headers)
            r = conn.getresponse()
            status, text = r.status, r.read()
            break
        except (http.client.HTTPException, ConnectionError):
            conn.close()
            _conn.c = None
            if attempt:
                raise
    return status, json.loads(text or b"{}"), time.perf_counter() - t0


def files_body(*files: bytes) -> bytes:
    return json.dumps({"dataframe_split": {"columns": ["file"],
                                           "data": [[base64.b64encode(f).decode()] for f in files]}}).encode()


def rss(proc: subprocess.Popen) -> int:
    root = psutil.Process(proc.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def latency(model: Any, url: str, dicom: bytes, calls: int, rounds: int) -> None:
    from mlflow.pyfunc import scoring_server

    frame, body = pd.DataFrame({"file": [dicom]}), files_body(dicom)
    # The scoring server runs predict on a worker thread (asyncio.to_thread); do the same here.
    worker = ThreadPoolExecutor(1, thread_name_prefix="predict")
    schema = model.metadata.get_input_schema()

    def local() -> float:
        t0 = time.perf_counter()
        model.predict(frame)
        return time.perf_counter() - t0

    local_answer = worker.submit(model.predict, frame).result()
    status, server_answer, _ = post(url, body)
    cols = local_answer.filter(like="score:").columns
    if status != 200 or not np.allclose([server_answer["predictions"][0][c] for c in cols],
                                        local_answer[cols].to_numpy(float)[0], atol=1e-5):
        sys.exit(f"the server and the in-process model disagree on the same file: {status} {server_answer}")
    for _ in range(3):  # warm-up on both sides (first decodes, lazy imports, allocator)
        worker.submit(local).result()
        post(url, body)
        local()
    def parse_predict_dump() -> float:  # the server's own request handler without HTTP: JSON/base64 in, JSON out
        t0 = time.perf_counter()
        scoring_server.invocations(body, "application/json", model, schema)
        return time.perf_counter() - t0

    local_p50, server_p50, handler_p50 = [], [], []
    for _ in range(rounds):  # interleaved by round: each side's calls back to back, as a busy client sends them
        local_p50.append(pct([worker.submit(local).result() for _ in range(calls)], 50))
        server_p50.append(pct([post(url, body)[2] for _ in range(calls)], 50))
        handler_p50.append(pct([worker.submit(parse_predict_dump).result() for _ in range(calls)], 50))
    # Reference only: the same call back to back on the main thread, what the first version of this script timed.
    main_p50 = [pct([local() for _ in range(calls)], 50) for _ in range(rounds)]
    worker.shutdown()
    print(f"in-process predict (worker thread) p50 per round (ms): {[round(v * 1e3, 2) for v in local_p50]}")
    print(f"server (1 client) p50 per round (ms): {[round(v * 1e3, 2) for v in server_p50]}")
    print(f"in-process scoring_server.invocations (no HTTP) p50 per round (ms): "
          f"{[round(v * 1e3, 2) for v in handler_p50]}")
    print(f"in-process predict (main thread) p50 per round (ms): {[round(v * 1e3, 2) for v in main_p50]}")
    print(f"worst rounds: in-process {max(local_p50) * 1e3:.2f} ms, server {max(server_p50) * 1e3:.2f} ms, "
          f"handler {max(handler_p50) * 1e3:.2f} ms, main thread {max(main_p50) * 1e3:.2f} ms; "
          f"worst-round ratio {max(server_p50) / max(local_p50):.2f}x")
    _figures.emit(NAME, "in-process pyfunc.predict p50, 1 DICOM, worker thread (best round)", min(local_p50) * 1e3,
                  "ms")
    _figures.emit(NAME, "in-process pyfunc.predict p50, 1 DICOM, main thread (best round)", min(main_p50) * 1e3, "ms")
    _figures.emit(NAME, "in-process scoring_server.invocations p50 (JSON in/out, no HTTP; best round)",
                  min(handler_p50) * 1e3, "ms")
    _figures.emit(NAME, "server p50 1 client, 1 DICOM (best round)", min(server_p50) * 1e3, "ms")
    _figures.emit(NAME, "server p50 1 client / in-process p50 (best rounds)", min(server_p50) / min(local_p50),
                  "x", "<= 1.5")


def concurrency(url: str, dicom: bytes, seconds: float) -> None:
    body = files_body(dicom)
    for clients in (1, 2, 4):
        stop = time.monotonic() + seconds

        def client(_: int) -> tuple[list[float], int]:
            times, errors = [], 0
            while time.monotonic() < stop:
                status, answer, dt = post(url, body)
                ok = status == 200 and answer["predictions"][0]["error"] == ""
                errors += not ok
                times.append(dt)
            return times, errors

        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(client, range(clients)))
        wall = time.perf_counter() - t0
        times = [t for ts, _ in results for t in ts]
        errors = sum(e for _, e in results)
        print(f"{clients} client(s): {len(times)} requests, p50 {pct(times, 50) * 1e3:.1f} ms, "
              f"p95 {pct(times, 95) * 1e3:.1f} ms, p99 {pct(times, 99) * 1e3:.1f} ms, "
              f"{len(times) / wall:.1f} req/s, {errors} errors")
        for q in (50, 95, 99):
            _figures.emit(NAME, f"server p{q}, {clients} client(s)", pct(times, q) * 1e3, "ms")
        _figures.emit(NAME, f"server throughput, {clients} client(s)", len(times) / wall, "req/s")
        _figures.emit(NAME, f"errors, {clients} client(s)", errors, "", "<= 0")


def load(model: Any, proc: subprocess.Popen, url: str, dicom: bytes, tif: bytes, n: int) -> None:
    expected = model.predict(pd.DataFrame({"file": [dicom]}))
    scores = expected.filter(like="score:").to_numpy(float)[0]
    local = {k: model.predict(pd.DataFrame({"file": [b]}))["error"][0] for k, b in
             (("truncated", dicom[: len(dicom) // 2]), ("text", b"\x00not a dicom file"), ("tif", tif))}
    kinds = [("good", files_body(dicom), 200), ("truncated", files_body(dicom[: len(dicom) // 2]), 200),
             ("text", files_body(b"\x00not a dicom file"), 200), ("tif", files_body(tif), 200),
             ("empty", b"", 400), ("oversize", files_body(b"\x00" * (MAX_BYTES + 1)), 413)]

    def one(k: int) -> bool:
        name, body, status = kinds[k % len(kinds)] if k % 2 else kinds[0]  # half the load: good files
        got, answer, _ = post(url, body)
        if got != status:
            return False
        if status != 200:
            return "\n" not in answer.get("message", "\n")
        row = answer["predictions"][0]
        if name == "good":
            return row["error"] == "" and np.allclose([row[c] for c in expected.filter(like="score:").columns],
                                                      scores, atol=1e-5)
        return row["error"] == local[name] != ""

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(40)))  # warm-up
        warm = rss(proc)
        ok = list(pool.map(one, range(n)))
    after = rss(proc)
    crashed = proc.poll() is not None
    print(f"load: {n} requests, {ok.count(False)} wrong answers, server {'DIED' if crashed else 'alive'}, "
          f"RSS {warm / 2**20:.0f} MiB after warm-up, {after / 2**20:.0f} MiB after the load")
    _figures.emit(NAME, f"server crashes over {n} mixed requests", float(crashed), "", "<= 0")
    _figures.emit(NAME, f"wrong answers over {n} mixed requests", ok.count(False), "", "<= 0")
    _figures.emit(NAME, "server RSS after load / after warm-up", after / warm, "x", "<= 1.2")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models:/medvit-medical@candidate", help="models:/ URI or model folder")
    p.add_argument("--tiny", action="store_true", help="register a tiny model in a temporary store and use it")
    p.add_argument("--calls", type=int, default=20, help="requests per latency round and side")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=20.0, help="per concurrency level")
    p.add_argument("--load", type=int, default=1000, help="requests in the load-and-faults run")
    args = p.parse_args()

    import mlflow
    import rasterio
    from rasterio.transform import from_origin

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = tiny_model(root) if args.tiny else args.model
        dicom = Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes()
        with rasterio.open(root / "rgb.tif", "w", driver="GTiff", width=16, height=16, count=3, dtype="uint16",
                           crs="EPSG:32633", transform=from_origin(0, 0, 10, 10)) as ds:
            ds.write(np.ones((3, 16, 16), np.uint16))
        tif = (root / "rgb.tif").read_bytes()
        model = mlflow.pyfunc.load_model(uri)
        proc, url = start_server(uri, root / "server.log")
        try:
            print(f"model {uri}; server {url}")
            latency(model, url, dicom, args.calls, args.rounds)
            concurrency(url, dicom, args.seconds)
            load(model, proc, url, dicom, tif, args.load)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
