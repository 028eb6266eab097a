"""Finetune-stage benchmark: the stage's wall time against its pure compute.

Usage::

    python benchmarks/finetune_stage.py                 # ~2 min on 2 cores
    python benchmarks/finetune_stage.py --train 64 --epochs 2

It writes a synthetic medical cache (``--train``/``--val``/``--test`` images of 224 px, 4 labels),
then, in this one process:

* runs the real ``medvit finetune`` stage on it (``medvit.cli.main``, MLflow tracking off) with the
  demo model and settings (deit3_small_patch16_384 at ``--img-size``, 6/12 blocks frozen, batch
  ``--batch``, no frozen-feature cache) and times it end to end: model build, data loading and
  augmentation, training, validation every epoch, the final val/test scoring and writing outputs;
* times the same model's training step and inference forward on random tensors (fastest of
  ``--steps``), and from them the pure compute of that run:
  ``epochs x ceil(train / batch) x step + (epochs x val + val + test) / batch x forward``.

Target (issue #4, 2-core CPU): the stage's wall time within 1.25x of its pure compute. Python's
start-up and imports (~10 s, paid once per `dvc repro` stage) are not in either number: the script
imports what the stage imports before timing it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _figures  # after the sys.path line: benchmarks/ is not a package

REPO = Path(__file__).resolve().parents[1]
LABELS = ("a", "b", "c", "d")


def write_cache(root: Path, counts: dict[str, int], size: int = 224, seed: int = 0) -> None:
    """A medical-like cache: one channel, a bright square per label so the labels are learnable."""
    from medvit.data.cache import ShardWriter
    from medvit.io.atomic import write_json_atomic

    rng = np.random.default_rng(seed)
    writer, rows, k = ShardWriter(root, 256), [], 0
    for split, n in counts.items():
        for _ in range(n):
            y = rng.random(len(LABELS)) < 0.35
            img = rng.normal(0.4, 0.1, (1, size, size)).astype(np.float32)
            for j in np.flatnonzero(y):
                r, c = divmod(int(j), 2)
                img[0, 20 + 100 * r:80 + 100 * r, 20 + 100 * c:80 + 100 * c] += 0.3
            shard, index = writer.add(np.clip(img, 0, 1))
            rows.append({"id": f"s{k:05d}", "group": f"g{k // 2:05d}", "split": split, "source": f"s{k}.dcm",
                         "shard": shard, "index": index, **{f"label:{n_}": int(v) for n_, v in zip(LABELS, y)}})
            k += 1
    writer.flush()
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    write_json_atomic(root / "labels.json", {"label_names": list(LABELS)})
    write_json_atomic(root / "stats.json", {"channels": ["gray"], "mean": [0.45], "std": [0.15], "size": size})


def stage_params(path: Path, args: argparse.Namespace) -> None:
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["finetune"].update(model="deit3_small_patch16_384", model_kwargs={}, weights="none", allow_random_init=True,
                         img_size=args.img_size, freeze_blocks=6, epochs=args.epochs, batch_size=args.batch,
                         early_stopping_patience=args.epochs, cache_frozen_features=False, num_workers=0,
                         domains={"medical": {}, "satellite": {}})  # no overrides; dvc.yaml declares both keys
    path.write_text(yaml.safe_dump(p, sort_keys=False))


def pure_compute(args: argparse.Namespace) -> tuple[float, float]:
    """(seconds per training step, seconds per inference batch) of the stage's model, fastest of --steps."""
    import timm

    from medvit.models.classifier import Classifier
    from medvit.models.head import MultiLabelHead
    from train_step import step_fn  # benchmarks/ is on sys.path: the same real training step

    torch.manual_seed(0)
    backbone = timm.create_model("deit3_small_patch16_384", pretrained=False, num_classes=0,
                                 img_size=args.img_size, in_chans=1)
    model = Classifier(backbone, MultiLabelHead(backbone.num_features, len(LABELS), 256, 0.1), 6)
    x = torch.randn(args.batch, 1, args.img_size, args.img_size)
    y = (torch.rand(args.batch, len(LABELS)) > 0.5).float()
    train_step = step_fn(model)

    def step() -> None:
        train_step(x, y)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    out = []
    for fn, mode in ((step, model.train), (forward, model.eval)):
        mode()
        fn()
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out.append(min(times))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=192)
    ap.add_argument("--val", type=int, default=48)
    ap.add_argument("--test", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--img-size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=8, help="timed steps for the pure-compute reference")
    args = ap.parse_args()
    os.environ["MEDVIT_TRACKING"] = "off"
    from medvit.cli import main as cli_main

    t_imports = time.perf_counter()
    # The stage imports these lazily (~10 s on this CPU: timm, albumentations, torch._dynamo, mlflow);
    # import them first so that the timed stage holds no interpreter start-up, like the reference.
    import albumentations  # noqa: F401
    import medvit.data.transforms  # noqa: F401
    import medvit.tracking.runs  # noqa: F401
    import medvit.train.loop  # noqa: F401
    import medvit.train.report  # noqa: F401
    import medvit.train.setup  # noqa: F401
    t_imports = time.perf_counter() - t_imports

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.train}/{args.val}/{args.test} "
          f"images, {args.epochs} epochs, batch {args.batch}, {args.img_size} px", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cache(root / "cache", {"train": args.train, "val": args.val, "test": args.test})
        stage_params(root / "params.yaml", args)
        step_s, fwd_s = pure_compute(args)
        t0 = time.perf_counter()
        rc = cli_main(["finetune", "--domain", "medical", "--cache", str(root / "cache"), "--out",
                       str(root / "model"), "--params", str(root / "params.yaml")])
        wall = time.perf_counter() - t0
        if rc not in (0, None):
            raise SystemExit(f"the finetune stage failed ({rc})")
        metrics = json.loads((root / "model" / "metrics.json").read_text())
    train_c = args.epochs * math.ceil(args.train / args.batch) * step_s
    eval_c = (args.epochs * math.ceil(args.val / args.batch) + math.ceil(args.val / args.batch)
              + math.ceil(args.test / args.batch)) * fwd_s
    pure = train_c + eval_c
    print(f"step {step_s:.3f} s ({args.batch / step_s:.1f} img/s), forward {fwd_s:.3f} s per batch")
    print(f"pure compute {pure:.1f} s (train {train_c:.1f} s + eval {eval_c:.1f} s); stage wall {wall:.1f} s "
          f"(its training loop alone: {metrics.get('train_seconds', float('nan')):.1f} s); "
          f"test macro AUROC {metrics.get('test/auroc_macro', float('nan')):.3f}")
    name = f"deit3_small {args.img_size}px b{args.batch}, {args.epochs} epochs x {args.train} images"
    _figures.emit("finetune_stage", f"train img/s, pure step ({name})", args.batch / step_s, "img/s")
    _figures.emit("finetune_stage", f"pure compute ({name})", pure, "s")
    _figures.emit("finetune_stage", f"stage wall time ({name})", wall, "s")
    _figures.emit("finetune_stage", "imports the stage needs (once per process, not in the ratio)", t_imports, "s")
    _figures.emit("finetune_stage", "stage wall / pure compute", wall / pure, "x", "<= 1.25")


if __name__ == "__main__":
    main()
