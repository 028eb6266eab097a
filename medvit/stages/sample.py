"""Write the embedded demo data set: real DICOM (medical) or GeoTIFF (satellite) files.

medical:   <out>/images/img_NNNNN.dcm and <out>/labels.csv (ChestX-ray14 style)
satellite: <out>/scenes/<stem>.tif, <out>/labels/<stem>.tif (land-cover rasters) and <out>/tiles.csv

Sizes, findings, classes and the seed come from the `sample:` section of params.yaml. The same
params give byte-identical files. An existing <out> is replaced only if it holds nothing but an
earlier sample. The files are made in medvit/sample/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medvit.config import Params
from medvit.paths import default_path

HELP = "Write the embedded demo data set (real DICOM / GeoTIFF files)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="output folder (default: data/raw/<domain>)")


def run(args: argparse.Namespace, params: Params) -> int:
    from medvit.sample import write_sample

    out = Path(args.out) if args.out else default_path("raw", args.domain)
    print(write_sample(args.domain, out, params.sample))
    return 0
