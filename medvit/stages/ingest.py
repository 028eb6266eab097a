"""Decode, de-identify, split and cache raw DICOM / GeoTIFF files.

Stub: implemented by the ingest issue.
"""

from __future__ import annotations

import argparse

from medvit.config import Params
from medvit.errors import UserError

HELP = "Decode, de-identify, split and cache raw DICOM / GeoTIFF files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", default=None, help="raw input folder (default: per --domain)")
    parser.add_argument("--labels", default=None, help="labels CSV (medical/tile CSV) or label-raster folder (satellite) (default: data/raw/<domain>/labels.csv or labels/)")
    parser.add_argument("--out", default=None, help="cache output folder (default: per --domain)")


def run(args: argparse.Namespace, params: Params) -> int:
    raise UserError("the ingest stage is not implemented yet")
