"""Train-step benchmark: GEMM peak, full vs partially frozen steps, MFU, data loader, frozen-feature cache.

Usage::

    python benchmarks/train_step.py                      # deit3_small + deit3_base at 384, CPU fp32
    python benchmarks/train_step.py --models deit3_small_patch16_384 --steps 2

All numbers come from one run on one machine. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on a real step, so the frozen
prefix contributes its forward only (it runs under no_grad) and the backward of
the trained blocks is counted once. MFU = counted FLOPs / step time / fp32 GEMM peak.
The frozen prefix is ``medvit.models.backbone``'s (stem + first K blocks); its forward
FLOPs are counted on their own too, through ``run_prefix``.

Targets (2-core CPU): half-frozen step time / full step time, divided by the counted
FLOP ratio of the two steps, <= 1.10 (issue #11: a 6/12-frozen step still runs the
prefix's forward, so its FLOP ratio is ~0.67, and the old target of <= 0.55x was below
that floor; this measures how close the step time gets to the FLOPs it saves);
MFU >= 0.65 (issue #4); data loader >= 5x train img/s; frozen-feature cache >= 1.8x
faster epochs at 3/4 frozen.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from medvit.config import AugmentConfig, FinetuneConfig
from medvit.data.cache import ShardWriter
from medvit.io.atomic import write_json_atomic
from medvit.data.dataset import CacheDataset
from medvit.data.transforms import train_transform
from medvit.models.backbone import run_prefix
from medvit.models.classifier import Classifier
from medvit.models.head import MultiLabelHead
from medvit.train.data import EpochDataset, train_loader
from medvit.train.loss import build_loss
from medvit.train.optimizer import build_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _figures  # after the sys.path line: benchmarks/ is not a package

NUM_LABELS = 8


def gemm_peak(n: int = 2048, reps: int = 6) -> float:
    """Best fp32 matmul throughput in GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def make_model(name: str, img_size: int, freeze_blocks: int) -> Classifier:
    backbone = timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size, in_chans=3)
    head = MultiLabelHead(backbone.num_features, NUM_LABELS, 256, 0.1)
    return Classifier(backbone, head, freeze_blocks)


def step_fn(model: Classifier):  # noqa: ANN201 - returns a closure
    """One real training step (forward, BCE, backward, clip, AdamW) as in medvit.train.loop."""
    opt = build_optimizer(model, FinetuneConfig(lr=1e-4, weight_decay=0.05, layer_decay=0.75))
    loss_fn = build_loss("bce", None)
    params = [p for g in opt.param_groups for p in g["params"]]

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = loss_fn(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


PEAKS: list[float] = []


def time_steps(step, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:  # noqa: ANN001
    """Fastest seconds per step after one warm-up step.

    The minimum, not the median: on a shared machine other processes only ever
    slow a step down. A GEMM peak is re-measured beside every timing and the
    highest one is used, so MFU is not inflated by a peak taken in a busy moment.
    """
    step(x, y)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - t0)
    PEAKS.append(gemm_peak(reps=3))
    return min(times)


def count_flops(step, x: torch.Tensor, y: torch.Tensor) -> float:  # noqa: ANN001
    with FlopCounterMode(display=False) as fc:
        step(x, y)
    return float(fc.get_total_flops())


def prefix_flops(model: Classifier, x: torch.Tensor) -> float:
    """Forward FLOPs of the frozen prefix alone (what a frozen step still pays for it)."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        run_prefix(model.backbone, x, model.freeze_blocks)
    return float(fc.get_total_flops())


def bench_model(name: str, img_size: int, batch: int, steps: int) -> dict[str, float]:
    depth = len(timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size).blocks)
    x, y = torch.randn(batch, 3, img_size, img_size), (torch.rand(batch, NUM_LABELS) > 0.5).float()
    out: dict[str, float] = {"depth": depth}
    for label, k in (("full", 0), ("half", depth // 2)):
        torch.manual_seed(0)
        model = make_model(name, img_size, k).train()
        step = step_fn(model)
        sec = time_steps(step, x, y, steps)
        flops = count_flops(step, x, y)
        out[f"{label}_s"] = sec
        out[f"{label}_img_s"] = batch / sec
        out[f"{label}_gflop"] = flops / 1e9
        out[f"{label}_gflops"] = flops / sec / 1e9
        out[f"{label}_prefix_gflop"] = prefix_flops(model, x) / 1e9
        print(f"  {name} {label:>4} (freeze {k:2d}/{depth}): {sec:7.3f} s/step  {batch / sec:6.2f} img/s  "
              f"{flops / 1e9 / batch:7.1f} GFLOP/img  {flops / sec / 1e9:6.1f} GFLOP/s", flush=True)
    out["half_over_full"] = out["half_s"] / out["full_s"]
    out["flop_ratio"] = out["half_gflop"] / out["full_gflop"]
    out["time_over_flop_ratio"] = out["half_over_full"] / out["flop_ratio"]
    return out


def bench_feature_cache(name: str, img_size: int, batch: int, steps: int) -> tuple[float, float, float]:
    """Seconds per step at 3/4 frozen: images through the prefix vs cached prefix tokens; and the prefix cost."""
    depth = len(timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size).blocks)
    torch.manual_seed(0)
    model = make_model(name, img_size, 3 * depth // 4).train()
    step = step_fn(model)
    x, y = torch.randn(batch, 3, img_size, img_size), (torch.rand(batch, NUM_LABELS) > 0.5).float()
    uncached = time_steps(step, x, y, steps)
    tokens = model.forward_prefix(x)  # (B, T, D), what cache_frozen_features stores
    cached = time_steps(step, tokens, y, steps)
    t0 = time.perf_counter()
    model.forward_prefix(x)
    return uncached, cached, time.perf_counter() - t0


def bench_loader(img_size: int, n: int = 96, cache_size: int = 224, batch: int = 8) -> float:
    """img/s of the real training input path (mmap shards -> medical augmentation -> resize -> normalise)."""
    with tempfile.TemporaryDirectory() as tmp:
        import pandas as pd

        rng = np.random.default_rng(0)
        w = ShardWriter(tmp, 64)
        rows = []
        for i in range(n):
            shard, index = w.add(rng.random((1, cache_size, cache_size), dtype=np.float32))
            rows.append({"id": f"s{i}", "group": f"g{i}", "split": "train", "source": "x", "shard": shard,
                         "index": index, "label:a": i % 2})
        w.flush()
        pd.DataFrame(rows).to_csv(Path(tmp) / "manifest.csv", index=False)
        write_json_atomic(Path(tmp) / "labels.json", {"label_names": ["a"]})
        ds = EpochDataset(CacheDataset(tmp, "train"),
                          train_transform("medical", AugmentConfig(), img_size, [0.5], [0.25]), seed=0)
        loader, _ = train_loader(ds, batch, 0, 0, 0, 1)
        next(iter(loader))
        t0 = time.perf_counter()
        count = sum(len(b["image"]) for b in loader)
        return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["deit3_small_patch16_384", "deit3_base_patch16_384"])
    ap.add_argument("--img-size", type=int, default=384)
    ap.add_argument("--batch", type=int, nargs="+", default=[4, 2], help="batch per model (last one repeats)")
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 on CPU", flush=True)
    peak = gemm_peak()
    print(f"fp32 GEMM peak (first measurement): {peak:.1f} GFLOP/s", flush=True)
    results = {}
    for i, name in enumerate(args.models):
        batch = args.batch[min(i, len(args.batch) - 1)]
        results[name] = bench_model(name, args.img_size, batch, args.steps)
    peak = max([peak, *PEAKS])
    for r in results.values():
        r["full_mfu"], r["half_mfu"] = r["full_gflops"] / peak, r["half_gflops"] / peak
    fastest = max(r["half_img_s"] for r in results.values())
    loader = bench_loader(args.img_size)
    name = args.models[-1]
    batch = args.batch[min(len(args.models) - 1, len(args.batch) - 1)]
    uncached, cached, prefix = bench_feature_cache(name, args.img_size, batch, args.steps)

    print(f"\nsummary (target in brackets); fp32 GEMM peak used for MFU: {peak:.1f} GFLOP/s "
          f"(max of {len(PEAKS) + 1} measurements)")
    for n, r in results.items():
        print(f"  {n}: half-frozen/full step time {r['half_over_full']:.2f} / counted FLOP ratio "
              f"{r['flop_ratio']:.2f} = {r['time_over_flop_ratio']:.2f} [<= 1.10] (frozen prefix forward "
              f"{r['half_prefix_gflop']:.1f} of {r['half_gflop']:.1f} GFLOP per step); "
              f"MFU full {r['full_mfu']:.2f}, half {r['half_mfu']:.2f} [>= 0.65]")
    print(f"  data loader: {loader:.0f} img/s = {loader / fastest:.1f}x the fastest train step "
          f"({fastest:.2f} img/s) [>= 5x]")
    print(f"  frozen-feature cache, {name} 3/4 frozen: {uncached:.3f} -> {cached:.3f} s/step = "
          f"{uncached / cached:.2f}x faster epochs [>= 1.8x] (one-off prefix pass {prefix / batch:.3f} s/img)")

    _figures.emit("train_step", "fp32 GEMM peak (max of all measurements)", peak, "GFLOP/s")
    for n, r in results.items():
        b = args.batch[min(args.models.index(n), len(args.batch) - 1)]
        tag = f"{n.removesuffix('_patch16_384')} {args.img_size}px b{b}"
        half = f"{r['depth'] // 2:.0f}/{r['depth']:.0f}"
        _figures.emit("train_step", f"train img/s full, {tag}", r["full_img_s"], "img/s")
        _figures.emit("train_step", f"train img/s {half} frozen, {tag}", r["half_img_s"], "img/s")
        _figures.emit("train_step", f"half-frozen / full step time, {tag}", r["half_over_full"], "x")
        _figures.emit("train_step", f"half-frozen / full counted FLOPs, {tag}", r["flop_ratio"], "x")
        _figures.emit("train_step", f"step-time ratio / FLOP ratio, {half} frozen, {tag}", r["time_over_flop_ratio"],
                      "x", "<= 1.10")
        _figures.emit("train_step", f"MFU full, {tag}", r["full_mfu"], "", ">= 0.65")
        _figures.emit("train_step", f"MFU {half} frozen, {tag}", r["half_mfu"], "", ">= 0.65")
    _figures.emit("train_step", f"data loader img/s ({args.img_size}px, medical augmentation)", loader, "img/s")
    _figures.emit("train_step", "data loader / fastest train img/s", loader / fastest, "x", ">= 5")
    _figures.emit("train_step", f"frozen-feature cache speed-up, {name.removesuffix('_patch16_384')} 3/4 frozen",
                  uncached / cached, "x", ">= 1.8")


if __name__ == "__main__":
    main()
