"""After the decode pass: reject check, splits, train statistics, nodata fill, manifest and report.

Splits are group-aware multi-label stratified (``medvit.data.splits``); groups
are pseudonyms, so the splits are deterministic for ``ingest.seed`` *and* the
de-identification key. Statistics come from the train split only (every cached
pixel the source counted: letterbox padding included for medical, valid pixels
only for satellite, whose nodata pixels are then filled with the train mean so
that they normalise to exactly 0).

Label cells are ``1``, ``0`` or empty (unknown: an ignored uncertain or blank
entry, NaN in a source's labels); splits stratify on the known positives.
Counts add up: ``n_input = n_ingested + n_rejected + n_filtered``, where
``n_filtered`` counts files a params filter left out (``filtered_by_reason``);
``reject_fraction`` is ``n_rejected / (n_input - n_filtered)``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medvit.config import IngestConfig
from medvit.io.atomic import write_json_atomic
from medvit.data.manifest import FIXED_COLUMNS, SPLITS, label_column
from medvit.data.splits import group_splits
from medvit.errors import UserError
from medvit.ingest.source import CacheInfo, Collected


def finish(tmp: Path, col: Collected, label_names: Sequence[str], cfg: IngestConfig, cache: CacheInfo,
           workers: int, fill_nodata: Callable[[np.ndarray], None]) -> dict[str, Any]:
    """Split, compute stats, fill nodata, write manifest and friends into ``tmp``; return the report.

    ``manifest.csv`` is written last (renamed from ``manifest.tmp``).

    Raises:
        UserError: more rejects than ``ingest.max_reject_fraction``, nothing ingested, duplicate ids.
    """
    n_rejected, n_filtered = len(col.rejects), sum(col.filtered.values())
    reasons = Counter(r.split(":")[0] for _, r in col.rejects)
    frac = n_rejected / max(1, col.n_input - n_filtered)
    if frac > cfg.max_reject_fraction:
        top = ", ".join(f"{r} ({n})" for r, n in reasons.most_common(5))
        raise UserError(f"ingest rejected {n_rejected} of {col.n_input} input files ({frac:.0%}), more than "
                        f"ingest.max_reject_fraction = {cfg.max_reject_fraction:g}. Top reasons: {top}. Fix the "
                        "inputs, or raise max_reject_fraction in params.yaml if this is expected.")
    if not col.rows:
        raise UserError(f"nothing was ingested from {col.n_input} input file(s); reasons: {dict(reasons)}"
                        + (f"; left out by filters: {dict(col.filtered)}" if n_filtered else ""))
    ids = [r["id"] for r in col.rows]
    if len(set(ids)) != len(ids):
        raise UserError("two samples got the same id (duplicate files or scene names); remove the duplicates")
    y = np.stack(col.labels).astype(np.float32)                                  # (N, L), NaN = unknown
    known = np.isfinite(y)
    positive = np.where(known, y, 0.0) > 0.5                                     # (N, L) known positives
    groups = [r["group"] for r in col.rows]
    if cache.splits is not None:  # the data set's own split (e.g. BigEarthNet's, use_official_split)
        splits = np.array(cache.splits, dtype=object)
    else:
        splits = group_splits(groups, positive.astype(np.uint8), cfg.split_fractions.model_dump(), cfg.seed)
    sums = np.stack(col.sums)                                                    # (N, 3, C)
    total = sums[splits == "train"].sum(0)
    count = np.maximum(total[2], 1.0)
    mean = total[0] / count
    std = np.sqrt(np.maximum(total[1] / count - mean**2, 0.0))
    std = np.where(std > 1e-8, std, 1.0)
    fill_nodata(mean.astype(np.float32))
    frame = pd.DataFrame(col.rows)
    frame["split"] = splits
    fixed = list(FIXED_COLUMNS)
    provenance = [c for c in frame.columns if c not in fixed]
    for j, name in enumerate(label_names):
        frame[label_column(name)] = np.where(known[:, j], np.where(positive[:, j], "1", "0"), "")
    frame = frame[fixed + provenance + [label_column(n) for n in label_names]]
    frame.to_csv(tmp / "manifest.tmp", index=False)
    write_json_atomic(tmp / "labels.json", {"label_names": list(label_names)})
    write_json_atomic(tmp / "stats.json", {"mean": mean.tolist(), "std": std.tolist(), "channels": cache.channels,
                                           "size": [cache.size, cache.size], "count": int(total[2].sum())})
    pd.DataFrame(col.rejects, columns=["source", "reason"]).to_csv(tmp / "rejects.csv", index=False)
    report = {
        "n_input": col.n_input, "n_ingested": col.n_ingested, "n_rejected": n_rejected,
        "n_samples": len(frame), "reject_fraction": round(frac, 6),
        "rejects_by_reason": dict(sorted(reasons.items())),
        "splits": {s: int((splits == s).sum()) for s in SPLITS},
        "groups": {s: int(frame.loc[frame["split"] == s, "group"].nunique()) for s in SPLITS},
        "labels": {n: int(positive[:, j].sum()) for j, n in enumerate(label_names)},
        "labels_unknown": {n: int((~known[:, j]).sum()) for j, n in enumerate(label_names)},
        "labels_per_split": {s: {n: int(positive[splits == s, j].sum()) for j, n in enumerate(label_names)}
                             for s in SPLITS},
        "n_filtered": n_filtered, "filtered_by_reason": dict(sorted(col.filtered.items())),
        "workers": workers, **cache.extra,
    }
    if report["n_input"] != report["n_ingested"] + report["n_rejected"] + report["n_filtered"]:
        raise AssertionError("ingest lost track of a file")  # conservation of counts; a bug if it fires
    write_json_atomic(tmp / "report.json", report)
    os.replace(tmp / "manifest.tmp", tmp / "manifest.csv")
    return report
