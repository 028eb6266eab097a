"""Fine-tune the partially frozen DeiT3 with a multi-label head.

Stub: implemented by the finetune issue.
"""

from __future__ import annotations

import argparse

from medvit.config import Params
from medvit.errors import UserError

HELP = "Fine-tune the partially frozen DeiT3 with a multi-label head."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default=None, help="ingest cache folder (default: per --domain)")
    parser.add_argument("--out", default=None, help="output folder for weights, checkpoint and scores (default: per --domain)")


def run(args: argparse.Namespace, params: Params) -> int:
    raise UserError("the finetune stage is not implemented yet")
