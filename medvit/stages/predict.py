"""Score your own files with a registered model: a folder of DICOM / PNG / JPEG, or GeoTIFF scenes.

Examples::

    medvit predict --model models:/medvit-medical@champion --input /data/cxr --out predictions/cxr --sr --overlays
    medvit predict --model models:/medvit-satellite/3 --input scenes/ --out predictions/scenes
    medvit predict --model ./downloaded-model --input one.dcm --out predictions/one

--model is a registry URI on the configured tracking server (MLFLOW_TRACKING_URI, else the embedded
SQLite store), a folder holding a downloaded MLflow model, or the finetune stage's output folder with
evaluate's thresholds (``--model models/medical --thresholds reports/medical/thresholds.json``: the
pipeline's own ``predict`` stage, an example on the sample data); nothing else is fetched. Files are found
as ingest finds them (every non-hidden file under --input, sorted) and decoded with the model's own
preprocessing. Writes predictions.parquet and predictions.csv (one row per image, frame or chip; an
unusable file gets an error row), SRs under sr/, overlays under overlays/, and per-scene maps under maps/.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from medvit.config import Params
from medvit.errors import UserError

HELP = "Score a folder or file with a registered model: predictions table, DICOM SR, overlays, scene maps."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="URI|DIR",
                        help="models:/medvit-<domain>@champion|@candidate, models:/medvit-<domain>/<version>, "
                             "a local MLflow model folder, or a finetune output folder (with --thresholds)")
    parser.add_argument("--thresholds", metavar="FILE",
                        help="evaluate's thresholds.json, when --model is a finetune output folder (models/<domain>)")
    parser.add_argument("--input", required=True, metavar="FILE|DIR", help="a file, or a folder searched recursively")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--sr", action="store_true", help="write a DICOM Comprehensive SR per scored DICOM image")
    parser.add_argument("--overlays", action="store_true", help="write attention-rollout overlays (PNG)")
    parser.add_argument("--workers", type=_at_least_one, default=max(2, min(4, (os.cpu_count() or 1) - 1)),
                        help="decode processes (default: %(default)s)")
    parser.add_argument("--batch-size", type=_at_least_one, default=16, help="images per forward pass (default: %(default)s)")


def _at_least_one(text: str) -> int:
    """An argparse type: an integer >= 1 (a batch size of 0 failed deep in the model loop)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def _inputs(root: Path, out: Path) -> list[tuple[str, Path]]:
    from medvit.ingest.source import find_files, relative_keys

    if root.is_file():
        return [(root.name, root)]
    if not root.is_dir():
        raise FileNotFoundError(f"--input {root}: no such file or folder")
    files = find_files(root, exclude=[out])
    if not files:
        raise UserError(f"--input {root}: no input files found (hidden files are skipped)")
    return list(zip(relative_keys(files, root), files))


def run(args: argparse.Namespace, params: Params | None) -> int:
    from medvit.deid import Pseudonymizer, load_key
    from medvit.predict import ModelFiles, Options, predict
    from medvit.tracking.local_model import resolve_model

    out = Path(args.out)
    inputs = _inputs(Path(args.input), out)
    local = resolve_model(args.model, out / ".model", Path(args.thresholds) if args.thresholds else None)
    model = ModelFiles(local.classifier, local.thresholds, local.name, local.version)
    try:
        summary = predict(inputs, model, out, Options(sr=args.sr, overlays=args.overlays, workers=args.workers,
                                                      batch_size=args.batch_size), Pseudonymizer(load_key()[0]))
    except ValueError as err:
        raise UserError(str(err)) from None
    print(f"predict: {summary.files} file(s), {summary.rows} row(s), {summary.errors} with an error; "
          f"{summary.srs} SR, {summary.overlays} overlay(s), {summary.maps} map(s) -> {out}/predictions.parquet")
    return 0
