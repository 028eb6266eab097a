"""Write the embedded demo data set (real DICOM / GeoTIFF files).

Stub: implemented by the sample issue.
"""

from __future__ import annotations

import argparse

from medvit.config import Params
from medvit.errors import UserError

HELP = "Write the embedded demo data set (real DICOM / GeoTIFF files)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="output folder (default: per --domain)")


def run(args: argparse.Namespace, params: Params) -> int:
    raise UserError("the sample stage is not implemented yet")
