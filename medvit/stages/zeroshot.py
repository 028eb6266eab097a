"""Score CLIP zero-shot and linear-probe baselines on the same splits.

Stub: implemented by the zeroshot issue.
"""

from __future__ import annotations

import argparse

from medvit.config import Params
from medvit.errors import UserError

HELP = "Score CLIP zero-shot and linear-probe baselines on the same splits."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default=None, help="ingest cache folder (default: per --domain)")
    parser.add_argument("--out", default=None, help="output folder for baseline score tables (default: per --domain)")


def run(args: argparse.Namespace, params: Params) -> int:
    raise UserError("the zeroshot stage is not implemented yet")
