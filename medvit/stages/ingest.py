"""Decode, de-identify, split and cache raw DICOM / GeoTIFF files.

Writes into --out: shards/ (memory-mapped float32), manifest.csv, labels.json,
stats.json (train-split mean/std), rejects.csv (source, reason) and report.json
(counts; a DVC metrics file). Outputs appear atomically, manifest.csv last.

Pseudonyms use the key in $MEDVIT_DEID_KEY or the git-ignored file
.medvit-deid-key; without either a public demo key is used, with a warning.

Examples::

    medvit ingest --domain medical
    medvit ingest --domain satellite --raw data/raw/satellite --out data/cache/satellite
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from medvit.config import Params
from medvit.paths import default_path

HELP = "Decode, de-identify, split and cache raw DICOM / GeoTIFF files."

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", default=None, help="raw input folder (default: data/raw/<domain>)")
    parser.add_argument("--labels", default=None,
                        help="labels: medical CSV (default <raw>/labels.csv; label_format mimic: "
                             "<raw>/mimic-cxr-2.0.0-chexpert.csv); satellite label-raster folder "
                             "(default <raw>/labels), tiles.csv (label_source: csv) or a GeoJSON / GeoPackage "
                             "of polygons (label_source: vector; default <raw>/labels.gpkg or labels.geojson); "
                             "bigearthnet-v2: metadata.parquet (default <raw>/metadata.parquet); bigearthnet-v1 "
                             "and eurosat: the raw folder (labels lie beside the images)")
    parser.add_argument("--out", default=None, help="cache output folder (default: data/cache/<domain>)")


def run(args: argparse.Namespace, params: Params) -> int:
    from medvit.ingest import ingest
    from medvit.ingest.registry import source_class

    raw = Path(args.raw) if args.raw else default_path("raw", args.domain)
    # The source knows its labels' place; only satellite reads a label source, so medical ingest
    # never reads (and so never depends on) satellite params.
    source = source_class(args.domain, params.ingest)
    labels = Path(args.labels) if args.labels else source.default_labels(raw, params.ingest)
    out = Path(args.out) if args.out else default_path("cache", args.domain)
    report = ingest(args.domain, raw, labels, out, params.ingest)
    print(f"ingest {args.domain}: {report['n_input']} file(s): {report['n_ingested']} ingested "
          f"({report['n_samples']} samples: {report['splits']}), {report['n_rejected']} rejected "
          f"{report['rejects_by_reason'] or ''}"
          + (f", {report['n_filtered']} left out by filters {report['filtered_by_reason']}"
             if report["n_filtered"] else "")
          + f" -> {out}")
    return 0
