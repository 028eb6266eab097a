"""Benchmark ``medvit predict`` throughput against a bare loop of the model's forward (issue 13).

Usage::

    python benchmarks/predict.py                  # 200 DICOM files, DeiT-S/16 at 224 px (~3-6 min on 2 busy cores)
    python benchmarks/predict.py --quick          # 200 files, a 4-block 192-wide ViT at 128 px (~2 min)
    python benchmarks/predict.py --n 64 --img-size 64 --depth 2 --embed-dim 64 --heads 2 --rounds 2

A randomly initialised classifier (``deit3_small_patch16_384`` with the depth,
width and input size given; 3 labels) is saved in the ``medvit.models.classifier``
layout with ingest's preprocessing params and val thresholds, as a registered
version's files are after ``medvit.tracking.local_model`` has resolved them. The
input folder holds ``--n`` copies of pydicom's ``CT_small.dcm`` (128 x 128 CT, one
frame), each with its own SOP Instance UID.

In one process, interleaved rounds in alternating order (best and worst printed):

* ``medvit predict``: ``medvit.predict.predict`` on the folder (files found as the
  CLI finds them, decoded in ``--workers`` processes overlapped with the
  classifier's batches of ``--batch-size``, predictions.parquet/.csv written);
* the bare loop: the same classifier's forward under ``torch.no_grad`` over the
  same images, decoded beforehand (not timed) with the model's own
  ``Preprocessor`` and stacked into model-input tensors of ``--batch-size``.

Figure: predict img/s over bare-loop img/s (best rounds). Target >= 0.8x. The
``predict`` side is checked to score every file, with the bare loop's scores.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pydicom.data
import torch
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _figures  # after the sys.path line: benchmarks/ is not a package

NAME = "predict"
LABELS = ["a", "b", "c"]


def make_model(root: Path, img_size: int, depth: int, embed_dim: int, heads: int) -> tuple[Path, Path]:
    """A random classifier folder and its thresholds.json under ``root``."""
    from medvit.data.preprocess import Preprocessor
    from medvit.models.classifier import build_classifier, save_classifier

    torch.manual_seed(0)
    prep = Preprocessor("medical", 224, dicom={"voi": "header", "window": None, "percentiles": [0.5, 99.5],
                                               "multiframe": "first", "allow_burned_in": False})
    meta = {"model": "deit3_small_patch16_384",
            "model_kwargs": {"depth": depth, "embed_dim": embed_dim, "num_heads": heads},
            "img_size": img_size, "in_chans": 1, "label_names": LABELS, "head": {"hidden_dim": 16, "dropout": 0.0},
            "mean": [0.45], "std": [0.25], "freeze_blocks": 1, "weights": "random-init",
            "preprocess": prep.with_model(img_size, [0.45], [0.25]).to_json()}
    save_classifier(build_classifier(meta), meta, root / "classifier")
    (root / "thresholds.json").write_text(json.dumps({"label_names": LABELS, "thresholds": [0.5] * len(LABELS),
                                                      "method": "fixed"}))
    return root / "classifier", root / "thresholds.json"


def make_folder(folder: Path, n: int) -> list[tuple[str, Path]]:
    """``n`` copies of CT_small.dcm with distinct SOP Instance UIDs, as (key, path) the way the CLI lists them."""
    from medvit.ingest.source import find_files, relative_keys

    folder.mkdir(parents=True)
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    for k in range(n):
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.save_as(folder / f"ct_{k:04d}.dcm")
    files = find_files(folder, exclude=[])
    return list(zip(relative_keys(files, folder), files))


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the decode workers, once their pool shut down)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def bare_inputs(classifier: Path, inputs: list[tuple[str, Path]], batch: int) -> tuple[torch.nn.Module, list]:
    """The classifier and its model-input batches of the decoded files (the untimed part of the bare loop)."""
    from medvit.data.preprocess import Preprocessor
    from medvit.models.classifier import load_classifier

    model, meta = load_classifier(classifier)
    prep = Preprocessor.from_json(meta["preprocess"])
    images = []
    for key, path in inputs:
        items = prep.decode(path.read_bytes(), key)
        if isinstance(items, str):
            sys.exit(f"{path}: {items}")
        images += [it.image for it in items]
    return model, [prep.to_model_input(np.stack(images[i:i + batch])) for i in range(0, len(images), batch)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="DICOM files in the folder")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--embed-dim", type=int, default=384)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=16, help="medvit predict's default")
    p.add_argument("--workers", type=int, default=2, help="decode processes (medvit predict's default here)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="--img-size 128 --depth 4 --embed-dim 192 --heads 3 --rounds 4")
    args = p.parse_args()
    if args.quick:
        args.img_size, args.depth, args.embed_dim, args.heads, args.rounds = 128, 4, 192, 3, 4

    from medvit.deid import Pseudonymizer
    from medvit.predict import ModelFiles, Options, predict

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        classifier, thresholds = make_model(root / "model", args.img_size, args.depth, args.embed_dim, args.heads)
        inputs = make_folder(root / "input", args.n)
        files = ModelFiles(classifier, thresholds, "medvit-medical", "bench")
        options = Options(workers=args.workers, batch_size=args.batch_size)
        pseudo = Pseudonymizer(b"benchmark key, not a secret" * 2)
        model, batches = bare_inputs(classifier, inputs, args.batch_size)
        n_images = sum(len(x) for x in batches)
        print(f"{args.n} DICOM files ({n_images} images); deit3_small_patch16_384 depth {args.depth}, "
              f"width {args.embed_dim}, {args.img_size} px; batch {args.batch_size}; {args.workers} decode workers; "
              f"torch {torch.get_num_threads()} threads")

        cpu: dict[str, list[float]] = {"predict": [], "bare": []}

        def run_predict() -> tuple[float, pd.DataFrame]:
            out = root / "out"
            shutil.rmtree(out, ignore_errors=True)
            c0, t0 = cpu_seconds(), time.perf_counter()
            predict(inputs, files, out, options, pseudo)
            seconds = time.perf_counter() - t0
            cpu["predict"].append(cpu_seconds() - c0)
            return seconds, pd.read_parquet(out / "predictions.parquet")

        @torch.no_grad()
        def run_bare() -> tuple[float, np.ndarray]:
            c0, t0 = cpu_seconds(), time.perf_counter()
            scores = [torch.sigmoid(model(x)) for x in batches]
            seconds = time.perf_counter() - t0
            cpu["bare"].append(cpu_seconds() - c0)
            return seconds, torch.cat(scores).double().numpy()

        # Uncounted warm-up of both sides, and the check that predict scores every file as the bare loop does.
        _, table = run_predict()
        _, bare = run_bare()
        cols = [f"score:{n}" for n in LABELS]
        if len(table) != n_images or (table["error"] != "").any() or not np.allclose(
                table[cols].to_numpy(float), bare, atol=1e-5):
            sys.exit(f"predict's table disagrees with the bare loop: {len(table)} rows, "
                     f"{int((table['error'] != '').sum())} errors")
        pred_rate, bare_rate = [], []
        cpu["predict"].clear()
        cpu["bare"].clear()
        for k in range(args.rounds):  # the order alternates, so neither side always runs after the other
            if k % 2:
                bare_rate.append(n_images / run_bare()[0])
            pred_rate.append(n_images / run_predict()[0])
            if not k % 2:
                bare_rate.append(n_images / run_bare()[0])
        ratios = [a / b for a, b in zip(pred_rate, bare_rate)]
        print(f"medvit predict img/s per round: {[round(v, 1) for v in pred_rate]}")
        print(f"bare forward loop img/s per round: {[round(v, 1) for v in bare_rate]}")
        print(f"best: predict {max(pred_rate):.1f} img/s, bare {max(bare_rate):.1f} img/s, "
              f"ratio {max(pred_rate) / max(bare_rate):.2f}x; worst: predict {min(pred_rate):.1f}, "
              f"bare {min(bare_rate):.1f}, ratio {min(pred_rate) / min(bare_rate):.2f}x; "
              f"per-round ratios {[round(r, 2) for r in ratios]}")
        cpu_pred, cpu_bare = (min(cpu[k]) / n_images * 1e3 for k in ("predict", "bare"))
        print(f"CPU per image (this process + decode workers, least of the rounds): predict {cpu_pred:.1f} ms, "
              f"bare loop {cpu_bare:.1f} ms (spin-waiting OpenMP threads count as CPU too)")
        size = f"{args.n} DICOM, {args.img_size} px, depth {args.depth}, batch {args.batch_size}"
        _figures.emit(NAME, f"medvit predict img/s ({size}; best round)", max(pred_rate), "img/s")
        _figures.emit(NAME, f"bare forward loop img/s ({size}; best round)", max(bare_rate), "img/s")
        _figures.emit(NAME, "CPU per image, medvit predict (incl. decode workers; least round)", cpu_pred, "ms")
        _figures.emit(NAME, "CPU per image, bare forward loop (least round)", cpu_bare, "ms")
        _figures.emit(NAME, "medvit predict / bare forward loop (best rounds)", max(pred_rate) / max(bare_rate),
                      "x", ">= 0.8")


if __name__ == "__main__":
    main()
