"""Label-CSV helpers every source shares: reading, the vocabulary, multi-hot rows, row numbers.

Messages name CSV row numbers, never cell values: a cell may hold PHI (a patient id,
a file name that embeds one).
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medvit.data.layout import NO_FINDING
from medvit.errors import UserError


def csv_rows(indices: Iterable[int]) -> str:
    """CSV row numbers (1 = header) of 0-based data rows, at most ten, for messages."""
    rows = [str(i + 2) for i in indices]
    return ", ".join(rows[:10]) + (f" (+{len(rows) - 10} more)" if len(rows) > 10 else "")


def split_names(cell: str) -> list[str]:
    """The label names of a ``|``-separated cell; blanks and ``No Finding`` dropped."""
    return [n.strip() for n in str(cell).split("|") if n.strip() and n.strip() != NO_FINDING]


def vocabulary(cells: pd.Series, label_names: Sequence[str], path: Path, column: str) -> tuple[str, ...]:
    """The label names: params when set (unknown names are fatal), else the sorted names in the file.

    Raises:
        UserError: a name missing from ``label_names``, or no name at all in the file.
    """
    found = sorted({n for cell in cells for n in split_names(cell)})
    if label_names:
        unknown = sorted(set(found) - set(label_names))
        if unknown:
            bad = [i for i, cell in enumerate(cells) if set(split_names(cell)) & set(unknown)]
            raise UserError(f"{path}: unknown label name(s) {unknown} in column '{column}' (rows {csv_rows(bad)}); "
                            f"add them to ingest.<domain>.label_names in params.yaml or fix the file")
        return tuple(label_names)
    if not found:
        raise UserError(f"{path}: no label names found in column '{column}' (every row is '{NO_FINDING}' or "
                        "empty); a classifier needs at least one finding")
    return tuple(found)


def multi_hot(cell: str, names: Sequence[str], index: dict[str, int] | None = None) -> np.ndarray:
    """(L,) uint8 0/1 vector over ``names`` for a ``|``-separated cell.

    Args:
        cell: the labels cell.
        names: the vocabulary, in column order.
        index: a prebuilt name -> position map (saves rebuilding it per row).
    """
    index = index if index is not None else {n: i for i, n in enumerate(names)}
    out = np.zeros(len(names), dtype=np.uint8)
    for n in split_names(cell):
        out[index[n]] = 1
    return out


def read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a labels CSV as strings (no NA parsing), header names stripped.

    Raises:
        FileNotFoundError: no such file.
        UserError: not a readable CSV, or a ``required`` column missing.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found; pass --labels FILE or run the sample stage")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{path}: not a readable CSV ({type(err).__name__}); fix or regenerate the labels file")
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; expected {list(required)} "
                        f"(found {list(frame.columns)})")
    return frame


# --------------------------------------------------------------------------- one column per finding
UNCERTAIN = -1.0  # CheXpert / MIMIC-CXR: the labeler found the finding uncertain
POLICY_VALUE = {"ones": 1.0, "zeros": 0.0, "ignore": np.nan}  # ignore: unknown, masked downstream


def finding_columns(columns: Sequence[str], label_names: Sequence[str], path: Path) -> tuple[str, ...]:
    """The finding columns to read: ``label_names`` when set (each must be a column), else all but ``No Finding``.

    Raises:
        UserError: a name in ``label_names`` that is not a column, or no finding column at all.
    """
    if label_names:
        missing = [n for n in label_names if n not in columns]
        if missing:
            raise UserError(f"{path}: no column(s) {missing} for ingest.medical.label_names; the file's finding "
                            f"columns are {list(columns)}; fix label_names in params.yaml")
        return tuple(label_names)
    names = tuple(c for c in columns if c != NO_FINDING)
    if not names:
        raise UserError(f"{path}: no finding columns; a classifier needs at least one finding")
    return names


def finding_values(frame: pd.DataFrame, names: Sequence[str], path: Path, uncertain: str,
                   blank: str) -> np.ndarray:
    """(N, L) float32 labels of CheXpert-style cells: ``1.0``, ``0.0``, ``-1.0`` (uncertain) or blank.

    ``uncertain`` (ones | zeros | ignore) maps ``-1.0``, ``blank`` (zeros | ignore) maps a blank cell;
    ``ignore`` gives NaN, stored as unknown in the manifest.

    Raises:
        UserError: any other value (``2.0``, ``yes``), naming the file, the rows and the column.
    """
    out = np.empty((len(frame), len(names)), np.float32)
    for j, name in enumerate(names):
        cells = frame[name].str.strip()
        value = pd.to_numeric(cells, errors="coerce").to_numpy(np.float64, copy=True)
        empty = (cells == "").to_numpy()
        bad = ~empty & ~np.isin(value, (1.0, 0.0, UNCERTAIN))
        if bad.any():
            raise UserError(f"{path}: column '{name}' rows {csv_rows(np.flatnonzero(bad))}: not a label value; "
                            "write 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or leave the cell blank")
        value[value == UNCERTAIN] = POLICY_VALUE[uncertain]
        value[empty] = POLICY_VALUE[blank]
        out[:, j] = value
    return out


def header_columns(path: Path) -> list[str]:
    """The stripped column names of a CSV (``.csv.gz`` too), reading its first line only; [] when unreadable."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
            return [c.strip() for c in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
