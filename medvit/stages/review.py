"""Review registered model versions: list, show, approve or reject.

Examples::

    medvit review list --domain medical
    medvit review show --domain medical --version 3   # without --version: the candidate
    medvit review approve --domain medical --version 3 --note "checked on site data"   # team server
    medvit review reject --domain medical --version 2 --reviewer "Dr Lee" --note "misses small nodules"  # embedded

Approve moves the ``champion`` alias; it is refused for random-init weights, a
version that did not pass the quality gate, and the user who registered the
version. On a tracking server with authentication the reviewer is the
authenticated MLflow user and needs MANAGE on ``medvit-<domain>``; ``--reviewer``
names an unauthenticated reviewer on the embedded store. Every decision is its own
``review.<n>.*`` entry of the version's audit trail. ``show`` also prints where the
version's review report is: ``reports/<d>/registry/review_report.html`` when its
sha256 matches the version tag, else a download verified against the tag.
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
    parser.add_argument("--reviewer", default=None,
                        help="who reviewed (approve/reject; embedded store only: recorded as unauthenticated:NAME)")
    parser.add_argument("--note", default=None, help="why (approve/reject)")
    parser.add_argument("--allow-self-approval", action="store_true",
                        help="embedded store only: let the user who registered a version approve it")


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
        if not key.startswith("review."):
            print(f"  {key}: {v.tags[key]}")
    print("audit trail:" if trail else "audit trail: (no review yet)")
    for e in trail:
        report = f" (report sha256 {e['report_sha256']})" if e.get("report_sha256", "none") != "none" else ""
        print(f"  {e.get('at')}  {e.get('decision')}  by {e.get('user')}: {e.get('note')}{report}")
    print()
    print(v.description or "(no model card)")


def _candidate(client: Any, name: str) -> str:
    from medvit.tracking.registry import CANDIDATE

    try:
        return client.get_model_version_by_alias(name, CANDIDATE).version
    except Exception:  # no alias (or no model): the CLI names what to pass instead
        raise UserError(f"{name} has no {CANDIDATE!r} version; pass --version N "
                        "(see `medvit review list`)") from None


def _print_report(client: Any, v: Any, domain: str) -> None:
    """Where the version's review report is (downloaded and checked against its sha256 tag if needed)."""
    from medvit.paths import default_path
    from medvit.tracking import report

    try:
        path = report.fetch_report(client, v, report.download_folder(),
                                   default_path("registry", domain) / report.REPORT_NAME)
    except report.ReportMissing as err:
        print(f"\nreview report: not available ({err})")
        return
    print(f"\nreview report: {path.resolve()}  (sha256 {report.report_sha256(v)}, matches the version tag)")


def run(args: argparse.Namespace, params: Params | None) -> int:
    from medvit.tracking import identity, registry, review

    name = registry.registered_model_name(args.domain)
    if args.action not in ("list", "show") and args.version is None:
        raise UserError(f"review {args.action} needs --version N (see `medvit review list --domain {args.domain}`)")
    if args.action in ("list", "show") and (args.reviewer or args.allow_self_approval):
        raise UserError(f"review {args.action} takes no --reviewer or --allow-self-approval")
    client = registry.client()
    needed = "READ" if args.action in ("list", "show") else identity.REVIEW_PERMISSION
    with identity.registry_errors(f"{needed} on registered model {name!r}", f"medvit review {args.action}"):
        if args.action == "list":
            _print_list(review.list_versions(client, name))
        elif args.action == "show":
            v = review.get_version(client, name, args.version or _candidate(client, name))
            _print_version(v, review.audit_trail(v))
            _print_report(client, v, args.domain)
        else:
            who = identity.reviewer(args.reviewer)
            if args.action == "approve":
                v = review.approve(client, name, args.version, who, args.note, args.allow_self_approval)
            else:
                v = review.reject(client, name, args.version, who, args.note)
            print(f"{name} version {v.version}: {v.tags['review_status']} by {v.tags['reviewer']} "
                  f"at {v.tags['reviewed_at']}; aliases: {', '.join(v.aliases) or '-'}")
    return 0
