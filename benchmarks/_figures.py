"""Machine-readable benchmark figures: one ``FIGURE<TAB>{json}`` line per figure on stdout.

Every script in benchmarks/ calls :func:`emit` for the figures it reports;
``benchmarks/run_all.py`` collects those lines from each script and prints one table.
A target is a string ``">= 1.7"`` or ``"<= 10"``; pass/fail is computed here from it,
so the table and the script can never disagree.
"""

from __future__ import annotations

import json
import math
import sys

PREFIX = "FIGURE\t"


def meets(value: float, target: str) -> bool:
    """Whether ``value`` meets ``target`` (``">= x"`` or ``"<= x"``); NaN never does."""
    op, _, number = target.strip().partition(" ")
    bound = float(number)
    if op not in (">=", "<="):
        raise ValueError(f"target {target!r} must look like '>= 1.7' or '<= 10'")
    if math.isnan(value):
        return False
    return value >= bound if op == ">=" else value <= bound


def emit(benchmark: str, figure: str, value: float, unit: str = "", target: str | None = None) -> dict:
    """Print one figure as ``FIGURE<TAB>{json}`` and return the record.

    Args:
        benchmark: script name, e.g. ``"ingest"``.
        figure: what was measured, with its conditions (sizes, model).
        value: the number (NaN allowed; JSON ``null`` then).
        unit: shown after the value and the target, e.g. ``"x"``, ``"img/s"``, ``"s"``.
        target: ``">= 1.7"`` / ``"<= 10"``, or None for a figure without a target.
    """
    value = float(value)
    record = {"benchmark": benchmark, "figure": figure, "value": None if math.isnan(value) else value,
              "unit": unit, "target": target, "ok": None if target is None else meets(value, target)}
    print(PREFIX + json.dumps(record), flush=True, file=sys.stdout)
    return record
