"""Where a sample run writes: a staging folder that replaces the output in two renames, and the summary."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from medvit.errors import UserError


@contextmanager
def staging(out: Path, entries: frozenset[str]) -> Iterator[Path]:
    """Yield an empty sibling folder of ``out``; on success it replaces ``out`` in two renames.

    Refuses to replace an existing ``out`` that holds anything besides ``entries``, so that a
    mistyped ``--out`` never deletes a user's own data.
    """
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out}: exists and is not a folder; pass another --out")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in entries)
        if foreign:
            raise UserError(f"{out}: holds {', '.join(foreign[:5])}, which the sample stage did not write; "
                            "pass another --out or empty the folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class SampleSummary:
    """What one sample run wrote (its ``str`` is the stage's one-line summary).

    Attributes:
        files: what a file is, plural ("DICOM files", "scenes").
        groups: what a split group is, plural ("patients", "places").
        detail: per-label counts and other figures, already formatted.
    """

    domain: str
    out: Path
    n_files: int
    files: str
    n_groups: int
    groups: str
    detail: str
    seconds: float

    def __str__(self) -> str:
        return (f"sample {self.domain}: wrote {self.n_files} {self.files} ({self.n_groups} {self.groups}; "
                f"{self.detail}) to {self.out} in {self.seconds:.1f}s")
