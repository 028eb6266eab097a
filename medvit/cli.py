"""The ``medvit`` command line: one subcommand per pipeline stage, plus doctor and review.

Examples::

    medvit sample --domain medical
    medvit ingest --domain satellite --raw data/raw/satellite --labels data/raw/satellite/labels --out data/cache/satellite
    medvit doctor
    medvit review list --domain medical

Hyperparameters live in params.yaml (or ``--params FILE``), never in flags.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from medvit import __version__
from medvit.config import DOMAINS, ConfigError, load_params, record_reads
from medvit.errors import UserError
from medvit.stages import STAGES

_EXTRA = ("doctor", "review", "pull", "predict")


def _stage_module(name: str):  # noqa: ANN202 - module object
    return importlib.import_module(f"medvit.stages.{name}")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (used by the CLI and the pipelines/ scripts)."""
    parser = argparse.ArgumentParser(
        prog="medvit",
        description=(
            "Fine-tune a partially frozen DeiT3-384 on DICOM and GeoTIFF data, score CLIP baselines, "
            "evaluate and register the model in MLflow. `dvc repro` runs every stage; these "
            "subcommands run one stage by hand. Hyperparameters come from params.yaml."
        ),
        epilog="Run `medvit <command> --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"medvit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in (*STAGES, *_EXTRA):
        mod = _stage_module(name)
        p = sub.add_parser(name, help=mod.HELP, description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name in STAGES:
            p.add_argument("--domain", required=True, choices=DOMAINS, help="which data domain to run")
            p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
        mod.add_arguments(p)
        p.set_defaults(_module=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medvit`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    mod = _stage_module(args._module)
    try:
        params = load_params(args.params) if hasattr(args, "params") and args._module in STAGES else None
        if params is not None:
            record_reads(args._module, args.domain)  # MEDVIT_RECORD_PARAMS: which keys this stage reads
        return int(mod.run(args, params) or 0)
    except (UserError, ConfigError, FileNotFoundError) as err:
        if args.verbose:
            raise
        print(f"medvit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medvit {args.command}: interrupted", file=sys.stderr)
        return 130


def run_stage(stage: str, argv: Sequence[str] | None = None) -> int:
    """Run one stage as ``medvit <stage> ARGV`` (used by pipelines/<stage>.py)."""
    return main([stage, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
