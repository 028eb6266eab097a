"""Pull DICOM instances from a PACS over DICOMweb into a raw folder that ingest reads.

QIDO-RS (PS3.18 10.6) finds the instances that match the query; WADO-RS (PS3.18 10.4)
retrieves each one in its stored transfer syntax (``transfer-syntax=*``, so the pixel data
arrives byte for byte as the PACS holds it) through ``dicomweb-client``. Each instance is
written as a DICOM Part 10 file named ``sha256(SOPInstanceUID)[:32].dcm``
(:func:`instance_file_name`): UIDs can embed dates, device serials or patient numbers, so
they never appear in a file name, a log line or an error.

* **Resumable, idempotent:** an instance whose file exists is skipped without a request.
  Files are written to a hidden temporary file in ``out`` and renamed into place
  (``medvit.io.atomic``), so a file that exists is complete; temporaries a killed run left
  behind are removed at the next start (ingest skips hidden files anyway).
* **Bounded concurrency:** ``MEDVIT_DICOMWEB_CONNECTIONS`` parallel retrievals (default 4).
  It is an operational courtesy limit agreed with the PACS team, not a hyperparameter, so it
  is an environment variable rather than a flag or a params.yaml key.
* **Credentials** come from the environment only: ``MEDVIT_DICOMWEB_USER`` and
  ``MEDVIT_DICOMWEB_PASSWORD`` (HTTP Basic), or ``MEDVIT_DICOMWEB_TOKEN`` (Bearer). A URL
  with ``user:password@`` is refused (command lines end up in dvc.yaml, dvc.lock and ``ps``),
  and every message shows the URL without user info, query or fragment (:func:`redact_url`).
* **Errors:** server down, HTTP 401/403, other HTTP errors and timeouts
  (``MEDVIT_DICOMWEB_TIMEOUT`` seconds, default 60) stop the pull with a ``UserError`` that
  names the redacted URL; files finished before the error stay (they are complete), nothing
  half-written does. Requests that fail on the network or with 408/429/503/504 are retried
  twice with a short back-off by ``dicomweb-client``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from dicomweb_client import DICOMwebClient
from tqdm import tqdm

from medvit.errors import UserError
from medvit.hashing import sha256_text
from medvit.io.atomic import atomic_path

log = logging.getLogger(__name__)

USER_ENV = "MEDVIT_DICOMWEB_USER"
PASSWORD_ENV = "MEDVIT_DICOMWEB_PASSWORD"
TOKEN_ENV = "MEDVIT_DICOMWEB_TOKEN"
CONNECTIONS_ENV = "MEDVIT_DICOMWEB_CONNECTIONS"
TIMEOUT_ENV = "MEDVIT_DICOMWEB_TIMEOUT"
DEFAULT_CONNECTIONS = 4
DEFAULT_TIMEOUT_S = 60.0
SUFFIX = ".dcm"

# QIDO-RS JSON keys (PS3.18 F.2): Study, Series and SOP Instance UID.
_STUDY, _SERIES, _SOP = "0020000D", "0020000E", "00080018"
# Their loggers print UIDs (dicomweb_client at INFO) and query strings (urllib3 at DEBUG).
_CHATTY_LOGGERS = ("dicomweb_client", "urllib3")


@dataclass(frozen=True)
class Instance:
    """One instance found by QIDO-RS; its UIDs never leave this module."""

    study: str
    series: str
    sop: str

    @property
    def file_name(self) -> str:
        return instance_file_name(self.sop)

    def __repr__(self) -> str:  # UIDs may identify: show the file name only
        return f"Instance({self.file_name})"


@dataclass(frozen=True)
class PullResult:
    """What one pull did: instances matched by the query, newly written, already present."""

    matched: int
    downloaded: int
    skipped: int


def instance_file_name(sop_instance_uid: str) -> str:
    """File name of an instance: 32 hex characters of sha256 of its SOP Instance UID, plus ``.dcm``.

    Use it to key a labels CSV (``Image Index``) on instances you know by UID.
    """
    return sha256_text(sop_instance_uid.strip(), 32) + SUFFIX


def redact_url(url: str) -> str:
    """``url`` without user info, query and fragment: what messages may show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a malformed port: show none rather than fail while reporting
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_query(items: Sequence[str]) -> dict[str, str]:
    """``["Modality=CR", ...]`` as QIDO-RS search filters (DICOM keywords or tags as keys).

    Raises:
        UserError: an item without ``=`` or with an empty or repeated key. The message
            names the item's position and key only: values can be patient identifiers.
    """
    filters: dict[str, str] = {}
    for i, item in enumerate(items, 1):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--query number {i} is not KEY=VALUE (e.g. --query Modality=CR)")
        if key in filters:
            raise UserError(f"--query {key} is given twice: give each key once")
        filters[key] = value
    return filters


def _session(env: Mapping[str, str], shown_url: str) -> requests.Session:
    session = requests.Session()
    user, password, token = env.get(USER_ENV), env.get(PASSWORD_ENV), env.get(TOKEN_ENV)
    if token and (user or password):
        raise UserError(f"set either {TOKEN_ENV} or {USER_ENV}/{PASSWORD_ENV} for {shown_url}, not both")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user or password:
        if not (user and password):
            raise UserError(f"{shown_url}: set both {USER_ENV} and {PASSWORD_ENV} (or neither)")
        session.auth = (user, password)
    return session


def _positive_env(env: Mapping[str, str], name: str, default: float, integer: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0 or (integer and not value.is_integer()):
        raise UserError(f"{name}={raw!r} must be a positive {'whole ' if integer else ''}number")
    return value


@contextmanager
def _quiet_loggers() -> Iterator[None]:
    saved = [(name, logging.getLogger(name).level) for name in _CHATTY_LOGGERS]
    for name, _ in saved:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved:
            logging.getLogger(name).setLevel(level)


@contextmanager
def server_errors(shown_url: str, timeout: float, action: str) -> Iterator[None]:
    """Turn a failed request into a ``UserError`` naming ``shown_url`` (never the request URL: UIDs, query values).

    Args:
        shown_url: the redacted base URL.
        timeout: the timeout in use (seconds), for the message.
        action: what was being done, e.g. ``"search (QIDO-RS)"``.
    """
    try:
        yield
    except requests.HTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            msg = (f"DICOMweb server {shown_url} refused the credentials (HTTP 401) during {action}: set "
                   f"{USER_ENV} and {PASSWORD_ENV}, or {TOKEN_ENV}, to an account of that server")
        elif status == 403:
            msg = (f"DICOMweb server {shown_url} denied access (HTTP 403) during {action}: the account in "
                   f"{USER_ENV} / {TOKEN_ENV} lacks the permission; ask the PACS administrators")
        else:
            msg = f"DICOMweb server {shown_url} answered HTTP {status} during {action}: check the URL and the server"
        raise UserError(msg) from None
    except requests.Timeout:
        raise UserError(f"DICOMweb server {shown_url} did not answer within {timeout:g} s during {action} "
                        f"(raise {TIMEOUT_ENV} for a slow server)") from None
    except requests.ConnectionError:
        raise UserError(f"cannot reach DICOMweb server {shown_url} during {action}: is it running, and is the "
                        "URL (scheme, host, port, path prefix such as /dicom-web) right?") from None
    except requests.RequestException as err:
        raise UserError(f"request to DICOMweb server {shown_url} failed during {action} "
                        f"({type(err).__name__})") from None


def remove_stale_temporaries(out: Path) -> int:
    """Delete the hidden temporaries (``.<name>.dcm.*.tmp``, see ``atomic_path``) a killed pull left in ``out``."""
    stale = list(out.glob(f".*{SUFFIX}.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_instance(dataset: Any, path: Path) -> None:
    """Write a retrieved ``pydicom.Dataset`` to ``path`` as a Part 10 file (preamble, DICM, file meta)."""
    dataset.save_as(path, enforce_file_format=True)


def _uid(row: Mapping[str, Any], tag: str) -> str:
    value = row.get(tag, {}).get("Value") or [""]
    return str(value[0]).strip()


class _Puller:
    """One thread-local ``DICOMwebClient`` per worker thread (``requests.Session`` is not thread-safe)."""

    def __init__(self, url: str, env: Mapping[str, str], timeout: float) -> None:
        self.url, self.env, self.timeout = url, env, timeout
        self.shown_url = redact_url(url)
        self._local = threading.local()

    def client(self) -> DICOMwebClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = DICOMwebClient(self.url, session=_session(self.env, self.shown_url), timeout=self.timeout)
            # 3 attempts, 1 s then 2 s apart: rides out a blip, reports a down server within seconds.
            client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=500)
            self._local.client = client
        return client

    def search(self, filters: Mapping[str, str]) -> list[Instance]:
        with server_errors(self.shown_url, self.timeout, "search (QIDO-RS)"):
            rows = self.client().search_for_instances(
                search_filters=dict(filters) or None, fields=("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
                get_remaining=True)
        found: dict[str, Instance] = {}
        for row in rows:
            inst = Instance(_uid(row, _STUDY), _uid(row, _SERIES), _uid(row, _SOP))
            if not (inst.study and inst.series and inst.sop):
                raise UserError(f"DICOMweb server {self.shown_url} returned a QIDO-RS result without Study, Series "
                                "or SOP Instance UID: it does not follow PS3.18; check the URL's path prefix")
            found.setdefault(inst.sop, inst)  # paged results may repeat an instance
        return sorted(found.values(), key=lambda i: i.file_name)

    def fetch(self, inst: Instance, out: Path) -> None:
        with server_errors(self.shown_url, self.timeout, f"retrieve (WADO-RS) of {inst.file_name}"):
            dataset = self.client().retrieve_instance(inst.study, inst.series, inst.sop)
        if str(getattr(dataset, "SOPInstanceUID", "")).strip() != inst.sop:
            raise UserError(f"DICOMweb server {self.shown_url} returned another instance than the one asked "
                            f"for {inst.file_name}; nothing was written for it")
        try:
            with atomic_path(out / inst.file_name) as tmp:
                write_instance(dataset, tmp)
        except OSError as err:  # disk full, permissions: atomic_path has removed the temporary
            raise UserError(f"cannot write {out / inst.file_name}: {err.strerror or type(err).__name__}") from None


def pull_dicomweb(url: str, filters: Mapping[str, str], out: str | Path,
                  env: Mapping[str, str] | None = None) -> PullResult:
    """Search ``url`` with ``filters`` and write every matching instance not yet in ``out``.

    Args:
        url: DICOMweb base URL (the QIDO-RS and WADO-RS root, e.g. ``https://pacs/dicom-web``).
        filters: QIDO-RS search filters, e.g. ``{"Modality": "CR"}`` (empty: every instance).
        out: the raw folder; created if missing.
        env: where credentials and knobs are read (default ``os.environ``).

    Raises:
        UserError: credentials in the URL, an unreachable or refusing server, a timeout.
    """
    env = os.environ if env is None else env
    shown_url = redact_url(url)
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise UserError(f"--url {shown_url!r} has a malformed port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--url {shown_url!r} is not an http(s) URL such as https://pacs.example.org/dicom-web")
    if parts.username or parts.password:
        raise UserError(f"--url must not carry credentials: use {shown_url} and set {USER_ENV} and "
                        f"{PASSWORD_ENV} (or {TOKEN_ENV}) in the environment")
    timeout = _positive_env(env, TIMEOUT_ENV, DEFAULT_TIMEOUT_S)
    connections = int(_positive_env(env, CONNECTIONS_ENV, DEFAULT_CONNECTIONS, integer=True))
    out = Path(out)
    puller = _Puller(url, env, timeout)
    with _quiet_loggers():
        instances = puller.search(filters)
        out.mkdir(parents=True, exist_ok=True)
        if removed := remove_stale_temporaries(out):
            log.info("removed %d partial file(s) an interrupted pull left in %s", removed, out)
        todo = [inst for inst in instances if not (out / inst.file_name).exists()]
        log.info("%s: %d instance(s) match (query keys: %s); %d already in %s, %d to download", shown_url,
                 len(instances), ", ".join(sorted(filters)) or "none", len(instances) - len(todo), out, len(todo))
        _fetch_all(puller, todo, out, connections)
    return PullResult(matched=len(instances), downloaded=len(todo), skipped=len(instances) - len(todo))


def _fetch_all(puller: _Puller, todo: Sequence[Instance], out: Path, connections: int) -> None:
    """Retrieve ``todo`` on ``connections`` threads; the first failure cancels what has not started and is raised."""
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=min(connections, len(todo)), thread_name_prefix="dicomweb") as pool, \
            tqdm(total=len(todo), desc="pull dicomweb", unit="file") as bar:
        pending: set[Future[None]] = {pool.submit(puller.fetch, inst, out) for inst in todo}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # raises the first failure
                    bar.update()
        finally:
            # On failure or Ctrl-C: drop queued retrievals; running ones finish or clean up their temporary.
            for future in pending:
                future.cancel()
