"""The ingest's temporary folder and its publication into ``out``, ``manifest.csv`` last.

Everything is written into a hidden folder beside ``out`` and moved in only when
complete, so a killed ingest leaves either the old complete outputs or no
manifest, never a mix DVC or finetune would accept.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from medvit.data.cache import SHARD_DIR
from medvit.data.preprocess import PREPROCESS_FILE

log = logging.getLogger(__name__)

OUTPUT_ITEMS: tuple[str, ...] = (SHARD_DIR, "labels.json", "stats.json", PREPROCESS_FILE, "rejects.csv", "report.json",
                                 "manifest.csv")


def temp_folder(out: Path) -> Path:
    """A fresh hidden folder beside ``out`` to build the outputs in.

    Leftovers of a killed earlier run are removed first (DVC never accepted them:
    they are not outputs).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*out.parent.glob(f".{out.name}.ingest-*"), *out.glob(f".{SHARD_DIR}.old-*")]:
        log.info("removing %s left by an interrupted ingest", stale)
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.ingest-", dir=out.parent))


def publish(tmp: Path, out: Path) -> None:
    """Move the finished outputs from ``tmp`` into ``out``, ``manifest.csv`` last.

    The old manifest is removed first, so a kill part-way leaves no manifest
    (nothing DVC or finetune accepts); other files in ``out`` (e.g. DVC's
    .gitignore) are left alone.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.csv").unlink(missing_ok=True)
    for name in OUTPUT_ITEMS:
        src, dst = tmp / name, out / name
        if not src.exists():
            continue
        if dst.is_dir() and not dst.is_symlink():
            old = out / f".{name}.old-{os.getpid()}"
            os.replace(dst, old)
            os.replace(src, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(src, dst)
