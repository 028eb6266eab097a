"""What the served pyfunc needs from MLflow beyond ``predict``: its registry version and request guards.

``mlflow models serve`` (MLflow 3.x, a FastAPI app in ``mlflow.pyfunc.scoring_server``)
reads the whole body and hands it to ``invocations``; it has no request size limit
of its own (only ``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``, 60 s by default, which
answers 504), and its errors carry the request (``Input: ...``, ``Failed to predict
data '...'``) over several lines. A pyfunc cannot see the body before MLflow has
parsed it, so :func:`guard_scoring_server` wraps ``invocations`` in the serving
process, when the model loads:

* a body over ``MEDVIT_SERVE_MAX_BYTES`` (default 64 MiB) is answered 413 before
  it is parsed; an empty body 400;
* an ``MlflowException`` (malformed JSON, an unknown input key, a request the
  model refuses) is answered with its status (4xx) and a one-line message, without
  the echoed request;
* any other exception is a 500 with a one-line message, never a traceback;
* the NaN scores of error rows are written as JSON ``null`` (a bare ``NaN`` is not JSON).

Nothing changes in a process that only loads the model (``pyfunc.load_model``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

MAX_BYTES_ENV = "MEDVIT_SERVE_MAX_BYTES"
DEFAULT_MAX_BYTES = 64 << 20
log = logging.getLogger(__name__)


def max_request_bytes() -> int:
    """The per-request body limit (``MEDVIT_SERVE_MAX_BYTES``, bytes)."""
    text = os.environ.get(MAX_BYTES_ENV, "")
    try:
        return int(text) if text else DEFAULT_MAX_BYTES
    except ValueError:
        raise ValueError(f"{MAX_BYTES_ENV}={text!r} is not a number of bytes") from None


def one_line(message: str) -> str:
    """MLflow's error text cut to its cause: after the last ``Error:`` of a predict failure, first line only."""
    if message.startswith("Failed to predict data") and "\nError: " in message:
        message = message.rsplit("\nError: ", 1)[1]
    first = message.strip().splitlines()[0] if message.strip() else "bad request"
    return first[:500]


def guard_scoring_server() -> None:
    """Wrap ``mlflow.pyfunc.scoring_server.invocations`` with the size limit and one-line errors (once)."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    original = scoring_server.invocations
    if getattr(original, "medvit_guard", False):
        return
    limit = max_request_bytes()

    def answer(status: int, code: str, message: str) -> Any:
        body = json.dumps({"error_code": code, "message": message})
        return scoring_server.InvocationsResponse(response=body, status=status, mimetype="application/json")

    def invocations(data: Any, content_type: str, model: Any, input_schema: Any) -> Any:
        size = len(data) if isinstance(data, (bytes, str)) else 0
        if size > limit:
            return answer(413, "REQUEST_TOO_LARGE", f"request body of {size} bytes is over the limit of {limit} "
                          f"bytes ({MAX_BYTES_ENV}); send fewer files per request")
        if isinstance(data, (bytes, str)) and not data.strip():
            return answer(400, "BAD_REQUEST", "empty request body; send JSON with 'inputs' (a tensor) or "
                          "'dataframe_split' (a 'file' column)")
        try:
            result = original(data, content_type, model, input_schema)
        except MlflowException as err:
            return answer(err.get_http_status_code(), str(err.error_code), one_line(err.message))
        except Exception as err:  # noqa: BLE001 - a request must never get a traceback back
            log.error("scoring failed: %s", type(err).__name__)
            return answer(500, "INTERNAL_ERROR", f"scoring failed: {type(err).__name__}")
        if result.status == 200 and "NaN" in result.response:
            # Error rows hold NaN scores, which Python writes as a bare NaN token: not JSON (RFC 8259).
            body = json.loads(result.response, parse_constant=lambda _: None)
            return result._replace(response=json.dumps(body))
        return result

    invocations.medvit_guard = True  # type: ignore[attr-defined]
    scoring_server.invocations = invocations


def registered_version(model_dir: Path) -> tuple[str, str]:
    """(registered model name, version) of the logged model in ``model_dir``, from its MLmodel and the registry.

    The version is looked up by the logging run (one version per register run), on
    ``MLFLOW_TRACKING_URI`` only; "unknown" when it is unset or unreachable, or the
    model is not registered.
    """
    import yaml

    try:
        spec = yaml.safe_load((model_dir / "MLmodel").read_text())
    except (OSError, yaml.YAMLError):
        return "unknown", "unknown"
    name = str((spec.get("metadata") or {}).get("registered_model") or "unknown")
    run_id = spec.get("run_id")
    if name == "unknown" or not run_id or not os.environ.get("MLFLOW_TRACKING_URI"):
        return name, "unknown"
    from medvit.tracking.registry import client

    try:
        versions = client().search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except Exception as err:  # noqa: BLE001 - a registry that is down must not stop serving
        log.warning("model version lookup failed (%s); serving with version 'unknown'", type(err).__name__)
        return name, "unknown"
    return name, str(max((int(v.version) for v in versions), default=0) or "unknown")
