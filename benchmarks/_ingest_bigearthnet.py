"""``benchmarks/ingest.py --parts bigearthnet``: BigEarthNet-like ingest throughput (issue #12).

Writes ``--ben-n`` BigEarthNet v1 patches (12 uint16 band files each: 120 x 120 at
10 m, 60 x 60 at 20 m, 20 x 20 at 60 m, UTM, deflate-free like the data set, plus
``<patch>_labels_metadata.json``), then, all in this one process and interleaved
(the order rotates every round, ``--repeats`` rounds, best counts, worst printed):

* a bare loop: ``rasterio.open(f).read()`` over every band file, one process;
* ``medvit.ingest.ingest`` (format bigearthnet-v1, all 12 bands) with ``workers: 1``;
* the same with ``workers: 0`` (one per core).

Files/s counts band files. Targets: all cores >= 0.8x the bare loop, and >= 1.7x
one worker. The ingest does more per file than the bare loop (masking, scaling,
bilinear resampling of 8 of the 12 bands to 120 x 120, stats, shard writes,
labels, splits), so the first ratio needs the extra cores to pay for that work.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

import _figures
from medvit.config import parse_params
from medvit.ingest import ingest
from medvit.ingest.bands import BIGEARTHNET_BANDS, RESOLUTION_M
from medvit.ingest.bigearthnet import CLC43

BENCH = "ingest"


def write_layout(root: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` v1 patches under ``root`` (8 tiles); return every band file, in patch order."""
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        name = f"S2A_MSIL2A_201706{1 + i % 8:02d}T101031_{i // 100}_{i % 100}"
        folder = root / name
        folder.mkdir(parents=True)
        left, top = 300_000.0 + 1200 * (i % 100), 6_000_000.0 - 1200 * (i // 100)
        for band in BIGEARTHNET_BANDS:
            res = RESOLUTION_M[band]
            size = 1200 // res
            data = rng.integers(0, 10_000, (1, size, size), dtype=np.uint16)
            path = folder / f"{name}_{band}.tif"
            with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint16",
                               crs="EPSG:32634", transform=from_origin(left, top, res, res)) as ds:
                ds.write(data)
            files.append(path)
        labels = sorted(rng.choice(len(CLC43), size=int(rng.integers(1, 4)), replace=False))
        (folder / f"{name}_labels_metadata.json").write_text(json.dumps({"labels": [CLC43[k] for k in labels]}))
    return files


def bare_loop(files: list[Path]) -> float:
    """Seconds to open and read every file with rasterio, in this process."""
    t = time.perf_counter()
    total = 0
    for path in files:
        with rasterio.open(path) as ds:
            total += int(ds.read().shape[-1])
    assert total > 0
    return time.perf_counter() - t


def ingest_run(raw: Path, out: Path, workers: int) -> float:
    """Seconds for the whole ingest stage over ``raw`` into a fresh ``out``."""
    cfg = parse_params({"ingest": {"workers": workers, "max_reject_fraction": 0.0,
                                   "satellite": {"format": "bigearthnet-v1", "bands": list(BIGEARTHNET_BANDS)}}})
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    report = ingest("satellite", raw, raw, out, cfg.ingest)
    seconds = time.perf_counter() - t
    assert report["n_rejected"] == 0, report["rejects_by_reason"]
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def bigearthnet(args: argparse.Namespace, work: Path, cores: int) -> None:
    """Write the layout, time the three configurations interleaved, print and emit the figures."""
    raw = work / "bigearthnet"
    t0 = time.perf_counter()
    files = write_layout(raw, args.ben_n)
    print(f"bigearthnet: {args.ben_n} patches, {len(files)} band files, written in {time.perf_counter() - t0:.1f}s",
          flush=True)
    configs: dict[str, Callable[[], float]] = {
        "bare rasterio loop": lambda: bare_loop(files),
        "ingest 1 worker": lambda: ingest_run(raw, work / "ben-out", 1),
        f"ingest all {cores} cores": lambda: ingest_run(raw, work / "ben-out", 0),
    }
    times: dict[str, list[float]] = {k: [] for k in configs}
    names = list(configs)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order every round
            times[name].append(configs[name]())
            print(f"  round {r + 1}: {name}: {len(files) / times[name][-1]:,.0f} files/s", flush=True)
    rate = {k: len(files) / min(v) for k, v in times.items()}
    worst = {k: len(files) / max(v) for k, v in times.items()}
    for k in names:
        print(f"bigearthnet {k}: best {rate[k]:,.0f} files/s, worst {worst[k]:,.0f} files/s", flush=True)
    bare, one, full = (rate[k] for k in names)
    size = f"{args.ben_n} patches x 12 bands"
    _figures.emit(BENCH, f"bigearthnet ingest all {cores} cores files/s, {size}", full, "files/s")
    _figures.emit(BENCH, f"bigearthnet ingest all {cores} cores / bare rasterio loop, {size}", full / bare, "x",
                  ">= 0.8")
    _figures.emit(BENCH, f"bigearthnet ingest all {cores} cores / 1 worker, {size}", full / one, "x", ">= 1.7")
