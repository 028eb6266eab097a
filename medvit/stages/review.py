"""Review registered model versions: list, show, approve or reject.

Examples::

    medvit review list --domain medical
    medvit review show --domain medical --version 3
    medvit review approve --domain medical --version 3 --reviewer "Dr Lee" --note "checked on site data"
    medvit review reject --domain medical --version 2 --reviewer "Dr Lee" --note "misses small nodules"

Approve moves the ``champion`` alias; it is refused for random-init weights or a
version that did not pass the quality gate. Every decision is recorded in the
version's tags and its ``review_audit`` trail. Works against the embedded store
or the tracking server named by ``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import argparse
from typing import Any

from medvit.config import DOMAINS, Params
from medvit.errors import UserError

HELP = "List, show, approve or reject registered model versions."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "show", "approve", "reject"))
    parser.add_argument("--domain", required=True, choices=DOMAINS)
    parser.add_argument("--version", type=int, default=None, help="model version (show/approve/reject)")
    parser.add_argument("--reviewer", default=None, help="who reviewed (approve/reject)")
    parser.add_argument("--note", default=None, help="why (approve/reject)")


def _print_list(rows: list[tuple[Any, list[str]]]) -> None:
    header = f"{'version':>7}  {'aliases':<20} {'review':<9} {'gate':<8} {'test AUROC':<23} weights"
    print(header)
    for v, aliases in rows:
        tags = v.tags
        auroc = tags.get("test/auroc_macro", "n/a")
        if "test/auroc_macro_ci_low" in tags:
            auroc += f" [{tags['test/auroc_macro_ci_low'][:5]}, {tags['test/auroc_macro_ci_high'][:5]}]"
        print(f"{v.version:>7}  {','.join(aliases) or '-':<20} {tags.get('review_status', '?'):<9} "
              f"{tags.get('gate', '?'):<8} {auroc:<23} {tags.get('weights', '?')}")


def _print_version(v: Any, trail: list[dict[str, Any]]) -> None:
    print(f"{v.name} version {v.version}  aliases: {', '.join(v.aliases) or '-'}")
    for key in sorted(v.tags):
        if key != "review_audit":
            print(f"  {key}: {v.tags[key]}")
    print("audit trail:" if trail else "audit trail: (no review yet)")
    for e in trail:
        print(f"  {e.get('at')}  {e.get('action')}  by {e.get('reviewer')}: {e.get('note')}")
    print()
    print(v.description or "(no model card)")


def run(args: argparse.Namespace, params: Params | None) -> int:
    from medvit.tracking import registry, review

    name = registry.registered_model_name(args.domain)
    if args.action != "list" and args.version is None:
        raise UserError(f"review {args.action} needs --version N (see `medvit review list --domain {args.domain}`)")
    client = registry.client()
    with review.registry_errors():
        if args.action == "list":
            _print_list(review.list_versions(client, name))
        elif args.action == "show":
            v = review.get_version(client, name, args.version)
            _print_version(v, review.audit_trail(v))
        else:
            decide = review.approve if args.action == "approve" else review.reject
            v = decide(client, name, args.version, args.reviewer, args.note)
            print(f"{name} version {v.version}: {v.tags['review_status']} by {v.tags['reviewer']} "
                  f"at {v.tags['reviewed_at']}; aliases: {', '.join(v.aliases) or '-'}")
    return 0
