"""Start and stop real local servers (``mlflow server`` with and without basic-auth, PostgreSQL,
``mlflow models serve``, Orthanc) in tests.

Imported by conftest files (tests/ is on sys.path through tests/conftest.py).
"""

from __future__ import annotations

import base64
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path,
              headers: dict[str, str] | None = None) -> None:
    """Poll ``url`` (with ``headers``) until it answers 200; fail with the server log if it dies or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
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


def orthanc_dicomweb_plugin() -> str:
    """Path of the DICOMweb plugin of the Debian package ``orthanc-dicomweb`` (fails the test if missing)."""
    try:
        files = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        files = []
    plugins = [f for f in files if Path(f).name.startswith("libOrthancDicomWeb.so") and Path(f).is_file()]
    if shutil.which("Orthanc") is None or not plugins:
        pytest.fail("Orthanc with its DICOMweb plugin is needed: apt-get install -y orthanc orthanc-dicomweb "
                    "(.ci/run installs them)")
    return plugins[0]


def start_orthanc(workdir: Path, users: dict[str, str], timeout: float = 60) -> tuple[str, subprocess.Popen]:
    """A real Orthanc with the DICOMweb plugin on a free loopback port, storage in ``workdir``; returns (url, process).

    HTTP Basic authentication is on for ``users``; the DICOM port, the Orthanc Explorer and WebDAV
    are off, and remote access is refused (Orthanc 1.10 has no bind address: it answers loopback only).
    """
    port = free_port()
    config = {
        "Name": "medvit-test", "StorageDirectory": str(workdir / "storage"), "IndexDirectory": str(workdir / "storage"),
        "HttpPort": port, "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": users,
        "DicomServerEnabled": False, "OrthancExplorerEnabled": False, "WebDavEnabled": False,
        "HttpCompressionEnabled": False, "Plugins": [orthanc_dicomweb_plugin()],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
    }
    (workdir / "orthanc.json").write_text(json.dumps(config))
    log = workdir / "orthanc.log"
    proc = start_server(["Orthanc", str(workdir / "orthanc.json")], log)
    user, password = next(iter(users.items()))
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        wait_http(f"http://127.0.0.1:{port}/system", proc, timeout, log, headers={"Authorization": f"Basic {auth}"})
    except BaseException:
        stop_server(proc)
        raise
    return f"http://127.0.0.1:{port}", proc


def postgres_bin() -> Path:
    """The bin folder of the newest Debian ``postgresql`` server (fails the test if missing)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        pytest.fail("PostgreSQL is needed: apt-get install -y postgresql (.ci/run installs it)")
    return Path(found[-1]).parent


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run ``cmd`` as the Debian ``postgres`` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres(password: str, databases: tuple[str, ...], timeout: float = 60
                   ) -> tuple[str, subprocess.Popen, Path]:
    """A real PostgreSQL on a free loopback port, its cluster in a new temporary folder.

    The superuser ``medvit`` logs in with ``password`` (scram-sha-256, also on the socket);
    ``databases`` are created. Returns (``postgresql://medvit:<password>@127.0.0.1:<port>``,
    process, data folder); stop it with ``stop_postgres``.
    """
    bin_dir = postgres_bin()
    # Not under pytest's tmp_path: that is private to root and the server runs as ``postgres``.
    data = Path(tempfile.mkdtemp(prefix="medvit-pg-"))
    (data / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
        shutil.chown(data / "pwfile", "postgres")
    cluster = data / "cluster"
    subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(cluster), "-U", "medvit", "-A",
                                      "scram-sha-256", f"--pwfile={data / 'pwfile'}", "-E", "UTF8",
                                      "--no-instructions"]), check=True, capture_output=True, timeout=120)
    port = free_port()
    log = data / "postgres.log"
    proc = start_server(_as_postgres_user([str(bin_dir / "postgres"), "-D", str(cluster), "-h", "127.0.0.1",
                                           "-p", str(port), "-k", str(data)]), log)
    env = {**os.environ, "PGPASSWORD": password}
    deadline = time.monotonic() + timeout
    try:
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        for db in databases:
            subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "medvit", db],
                           env=env, check=True, capture_output=True, timeout=60)
    except BaseException:
        stop_postgres(proc, data)
        raise
    return f"postgresql://medvit:{password}@127.0.0.1:{port}", proc, data


def stop_postgres(proc: subprocess.Popen, data: Path) -> None:
    """Stop the server (SIGTERM: smart shutdown, no client is left) and remove its cluster."""
    stop_server(proc)
    shutil.rmtree(data, ignore_errors=True)


def start_mlflow_auth_server(backend_uri: str, workdir: Path, admin_password: str, timeout: float = 180
                             ) -> tuple[str, subprocess.Popen]:
    """``mlflow server --app-name basic-auth`` on a free loopback port; returns (uri, process).

    The backend store is ``backend_uri``, artifacts are served from ``workdir/artifacts``; the
    auth config (``workdir/basic_auth.ini``: admin ``admin``/``admin_password``, default
    permission READ) keeps its users in ``workdir/auth.db``.
    """
    port = free_port()
    config = workdir / "basic_auth.ini"
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{workdir / 'auth.db'}\n"
                      f"admin_username = admin\nadmin_password = {admin_password}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    log = workdir / "mlflow-auth.log"
    proc = start_server(
        ["mlflow", "server", "--app-name", "basic-auth", "--backend-store-uri", backend_uri,
         "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        log, env={"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                  "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)})  # CSRF key of the auth app
    auth = base64.b64encode(f"admin:{admin_password}".encode()).decode()
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout, log, headers={"Authorization": f"Basic {auth}"})
    except BaseException:
        stop_server(proc)
        raise
    return f"http://127.0.0.1:{port}", proc
