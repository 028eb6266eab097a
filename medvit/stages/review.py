"""Review registered model versions: list, show, approve or reject.

Examples::

    medvit review list --domain medical
    medvit review approve --domain medical --version 3 --reviewer "Dr Lee" --note "checked on site data"

Stub: implemented by the evaluate/register issue.
"""

from __future__ import annotations

import argparse

from medvit.config import DOMAINS, Params
from medvit.errors import UserError

HELP = "List, show, approve or reject registered model versions."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "show", "approve", "reject"))
    parser.add_argument("--domain", required=True, choices=DOMAINS)
    parser.add_argument("--version", type=int, default=None, help="model version (show/approve/reject)")
    parser.add_argument("--reviewer", default=None, help="who reviewed (approve/reject)")
    parser.add_argument("--note", default=None, help="why (approve/reject)")


def run(args: argparse.Namespace, params: Params | None) -> int:
    raise UserError("review is not implemented yet")
