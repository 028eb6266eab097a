"""Atomic file writes: a temporary file in the target's folder, then ``os.replace``.

A killed stage leaves either the old file or the new one, never half of one. ``tempfile.mkstemp``
creates its file with mode 0600; we give it the mode a plain ``open`` would (0666 minus the umask)
before the rename, so that outputs stay readable to the team, to DVC and to the MLflow server.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# Read once: os.umask can only be read by setting it, which would race with other threads' writes.
_MODE = _default_mode()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (for writers that want a name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", fsync: bool = False, **kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` that only replaces ``path`` once the block has finished without error."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes whole files: mode must start with 'w', not {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON with sorted keys (stable bytes for DVC) via ``atomic_open``."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
