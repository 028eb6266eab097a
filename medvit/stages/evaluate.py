"""Compare the fine-tuned model with the baselines: metrics, CIs, plots.

Stub: implemented by the evaluate issue.
"""

from __future__ import annotations

import argparse

from medvit.config import Params
from medvit.errors import UserError

HELP = "Compare the fine-tuned model with the baselines: metrics, CIs, plots."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", default=None, help="ingest cache folder (default: per --domain)")
    parser.add_argument("--finetune", default=None, help="finetune output folder (default: per --domain)")
    parser.add_argument("--baselines", default=None, help="zeroshot output folder (default: per --domain)")
    parser.add_argument("--out", default=None, help="report output folder (default: per --domain)")


def run(args: argparse.Namespace, params: Params) -> int:
    raise UserError("the evaluate stage is not implemented yet")
