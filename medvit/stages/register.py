"""Apply the quality gate and register the model in the MLflow Model Registry.

Stub: implemented by the register issue.
"""

from __future__ import annotations

import argparse

from medvit.config import Params
from medvit.errors import UserError

HELP = "Apply the quality gate and register the model in the MLflow Model Registry."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--finetune", default=None, help="finetune output folder (default: per --domain)")
    parser.add_argument("--report", default=None, help="evaluate output folder (default: per --domain)")
    parser.add_argument("--out", default=None, help="folder for the registration record (default: per --domain)")


def run(args: argparse.Namespace, params: Params) -> int:
    raise UserError("the register stage is not implemented yet")
