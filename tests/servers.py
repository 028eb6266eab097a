"""Start and stop real local servers (``mlflow server``, ``mlflow models serve``) in tests.

Imported by conftest files (tests/ is on sys.path through tests/conftest.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    """Poll ``url`` until it answers 200; fail with the server log if it dies or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def start_server(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so teardown can end it and its workers)."""
    with open(log, "w") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                start_new_session=True)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it after 10 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def start_mlflow_server(db: Path, artifacts: Path, log: Path, timeout: float = 180) -> tuple[str, subprocess.Popen]:
    """A real ``mlflow server`` over the SQLite store ``db`` on a free localhost port; returns (uri, process)."""
    port = free_port()
    proc = start_server(
        ["mlflow", "server", "--backend-store-uri", f"sqlite:///{db}", "--default-artifact-root", str(artifacts),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        log, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # no background job runner: faster start
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout, log)
    except BaseException:
        stop_server(proc)
        raise
    return f"http://127.0.0.1:{port}", proc
