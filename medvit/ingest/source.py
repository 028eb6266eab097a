"""The source interface: one implementation per data set format, picked in ``medvit.ingest.registry``.

A source turns one raw folder and its labels into cache samples. ``ingest``
calls, in this order:

1. :meth:`Source.list_inputs`: the input files (each ends up in the manifest
   XOR in ``rejects.csv`` XOR counted as left out by a filter, e.g. ``ingest.medical.views``);
2. :meth:`Source.read_labels`: read and check the labels; the label names;
3. :meth:`Source.plan`: the decode pass as a :class:`Plan`: tasks, the
   module-level function that decodes one task in a worker, and the typed worker
   state the pool installs once per process;
4. :meth:`Source.collect` on each decoded result, in task order, in the main
   process (where shards are numbered, so the cache does not depend on the
   worker count);
5. :meth:`Source.cache_info` once every result is in, then
   :meth:`Source.fill_nodata` with the train-split mean, and :meth:`Source.close`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medvit.config import IngestConfig


@dataclass
class Sample:
    """One decoded sample as a worker returns it."""

    image: np.ndarray | None          # (C, H, W) float32, no NaN; None once a worker wrote it (``loc``)
    meta: dict[str, Any]              # id, group, source + provenance columns
    labels: np.ndarray                # (L,) 0/1, float32 NaN = unknown (an ignored uncertain or blank entry)
    sums: np.ndarray                  # (3, C) float64: sum, sum of squares, count of valid pixels
    mask: bytes | None = None         # packed (C, H, W) nodata mask, None when all valid
    loc: tuple[int, int] | None = None  # (part, index) in its block's part files, when a worker wrote it


@dataclass
class TaskResult:
    """What one worker task returns: samples, or the file's reject reason."""

    key: str                          # the input file (relative path)
    source: str                       # PHI-safe source column value
    samples: list[Sample] = field(default_factory=list)
    reject: str | None = None
    filtered: str | None = None       # left out by a params filter (e.g. "view LATERAL"): not a reject
    counters: Counter = field(default_factory=Counter)
    decoder: tuple[str, str] | None = None  # (transfer syntax, decoder plugin)


@dataclass
class Collected:
    """Everything the main process keeps per sample (small: no pixels)."""

    n_input: int
    rows: list[dict[str, Any]] = field(default_factory=list)   # manifest rows, shard and index included
    labels: list[np.ndarray] = field(default_factory=list)     # (L,) each
    sums: list[np.ndarray] = field(default_factory=list)       # (3, C) each
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    filtered: Counter = field(default_factory=Counter)           # reason -> input files left out by a filter
    n_ingested: int = 0

    def add(self, row: dict[str, Any], labels: np.ndarray, sums: np.ndarray) -> None:
        """Keep one cached sample."""
        self.rows.append(row)
        self.labels.append(labels)
        self.sums.append(sums)

    def reject(self, source: str, reason: str) -> None:
        """Record one input file that yields no sample."""
        self.rejects.append((source, reason))

    def filter(self, reason: str) -> None:
        """Count one input file a params filter left out (counted by reason, not a reject)."""
        self.filtered[reason] += 1


@dataclass
class Plan:
    """The decode pass a source asks the process pool for (see ``medvit.ingest.pool.parallel_map``)."""

    tasks: Sequence[Any]
    decode: Callable[[Any], Any]                   # module-level, so that it pickles by name
    state: object                                  # typed worker state, installed once per process
    isolate: Callable[[Any, BaseException], Any]   # the result of a task that killed its worker
    workers: int
    max_chunk: int = 8
    split: Callable[[Any], list[Any]] | None = None
    files: Callable[[Any], int] | None = None      # input files per task (progress bar)


@dataclass(frozen=True)
class CacheInfo:
    """What the source tells ``finish`` about its cache: stats.json fields and report extras."""

    channels: list[str]
    size: int
    extra: dict[str, Any]
    splits: tuple[str, ...] | None = None  # per manifest row: the data set's official split; None: ingest splits


class Source(ABC):
    """One data set format of one domain: find, label, plan and decode its files.

    Args:
        raw: the raw input folder (absolute).
        labels: the labels file or folder.
        tmp: the temporary output folder (``shards/`` and friends go here).
        cfg: the ingest params.
    """

    desc: ClassVar[str]  # progress-bar label of the decode pass

    def __init__(self, raw: Path, labels: Path, tmp: Path, cfg: IngestConfig) -> None:
        self.raw, self.labels, self.tmp, self.cfg = raw, labels, tmp, cfg

    @classmethod
    @abstractmethod
    def default_labels(cls, raw: Path, cfg: IngestConfig) -> Path:
        """Where the labels lie inside ``raw`` in the layout the sample stage writes (``--labels`` default)."""

    @classmethod
    def detect(cls, labels: Path) -> bool:
        """Whether ``labels`` is in this format (asked when the format param is null; see the registry)."""
        return False

    @abstractmethod
    def list_inputs(self) -> list[Path]:
        """Every input file, sorted.

        Raises:
            UserError: no input file, or inputs the cache could not tell apart.
        """

    @abstractmethod
    def read_labels(self) -> tuple[str, ...]:
        """Read and check the labels of the listed inputs; return the label names in column order.

        Raises:
            UserError: a labels problem that would make the cache wrong (rows named, not values).
        """

    @abstractmethod
    def plan(self, col: Collected) -> Plan:
        """The decode pass; inputs rejected before decoding go into ``col``."""

    @abstractmethod
    def collect(self, result: Any, col: Collected) -> None:
        """Take one result of the plan's ``decode``, in task order, into ``col``."""

    @abstractmethod
    def cache_info(self, col: Collected) -> CacheInfo:
        """Finish writing shards after the last result; the channel names, image size and report extras."""

    def fill_nodata(self, mean: np.ndarray) -> None:  # noqa: B027 - optional hook, nothing to fill by default
        """Replace masked (nodata) pixels in the written shards by the train-split ``mean`` (C,)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release temporary resources; called even when the run fails."""


def find_files(root: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Every non-hidden regular file under ``root``, sorted; ``exclude`` paths (and below) skipped.

    Paths are compared as absolute paths, not resolved (a symlink to the labels file is an input).
    """
    excluded = {os.path.abspath(p) for p in exclude}
    files = []
    for dirpath, dirnames, filenames in os.walk(os.path.abspath(root)):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and os.path.join(dirpath, d) not in excluded)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if not name.startswith(".") and full not in excluded:
                files.append(Path(full))
    return files


def relative_keys(files: Sequence[Path], root: Path) -> list[str]:
    """``/``-separated paths of ``files`` relative to ``root``, which every one of them lies under.

    Sliced off the absolute prefix (``find_files`` keeps it) rather than ``Path.relative_to``:
    this runs once per input file.
    """
    prefix = len(os.path.join(root, ""))
    return [str(p)[prefix:].replace(os.sep, "/") for p in files]
