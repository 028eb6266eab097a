"""Whether a bootstrap interval can be trusted: enough groups resampled.

A group (cluster) bootstrap over G patients or scenes can only produce the
resamples G groups allow: with G = 2 a "95 % CI" is a handful of values and
says nothing (issue #14). An interval from fewer than ``evaluate.min_groups``
groups is therefore reported as unreliable, naming the group count, everywhere
it is shown: metrics.json (``test/ci_reliable``), ``intervals.json``,
comparison.md/.html, subgroups.csv, the model card, the registry tags, and the
gate treats it as missing evidence (``medvit.evaluate.gate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOO_FEW = "too few groups for an interval"


@dataclass(frozen=True)
class Reliability:
    """Group count behind a set of intervals and the minimum for trusting them."""

    n_groups: int
    min_groups: int

    @property
    def reliable(self) -> bool:
        return self.n_groups >= self.min_groups

    def note(self) -> str:
        """One sentence for reports; empty when the intervals are reliable."""
        if self.reliable:
            return ""
        return (f"Unreliable intervals: the test split has {self.n_groups} group(s), fewer than "
                f"evaluate.min_groups ({self.min_groups}); every CI here resamples only those {self.n_groups} "
                "group(s) and must not be read as a 95 % interval. Add data or use smaller groups "
                "(ingest.satellite.group_block) so test holds at least min_groups groups.")

    def to_dict(self) -> dict[str, Any]:
        """``intervals.json``."""
        return {"n_groups": self.n_groups, "min_groups": self.min_groups, "reliable": self.reliable,
                "note": self.note()}


def interval_status(n_groups: int, min_groups: int, rest_groups: int | None = None) -> str:
    """``ok`` or ``too few groups for an interval (G groups)``; ``rest_groups`` for a paired comparison."""
    if n_groups < min_groups:
        return f"{TOO_FEW} ({n_groups} groups)"
    if rest_groups is not None and rest_groups < min_groups:
        return f"{TOO_FEW} (rest of test: {rest_groups} groups)"
    return "ok"
