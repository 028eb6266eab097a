"""Label-CSV helpers every source shares: reading, the vocabulary, multi-hot rows, row numbers.

Messages name CSV row numbers, never cell values: a cell may hold PHI (a patient id,
a file name that embeds one).
"""

from __future__ import annotations

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
