"""Benchmark the zeroshot stage: embedding throughput and a re-run with new prompts.

Usage::

    python benchmarks/zeroshot.py                    # ~3-5 min on 2 CPU cores
    python benchmarks/zeroshot.py --n-images 64 --batch-size 16

Uses a randomly initialised ViT-B/16 CLIP (transformers default config with
patch 16, 224 px; no download), saved once to a temporary folder and loaded
through the real ``load_transformers`` path, and a synthetic 1-channel cache of
``--n-images`` 224 px images (the medical layout). In one process, side by side:

* img/s of our embedding path (cache read -> RGB -> CLIP preprocessing ->
  ``encode_images`` under inference_mode) against a plain
  ``CLIPModel.get_image_features`` loop over ready-made pixel tensors at the same
  batch size; batches alternate between the two and the median batch time of each
  is kept, so load from other processes hurts both alike. Target >= 0.9x.
* a first run of the stage's compute (model load + image embeddings of all
  splits + prompts + both baselines) against a re-run with different prompts
  that reuses the cached embeddings (model load + text + scoring). Target >= 10x.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medvit.config import LinearProbeConfig, ZeroshotDomain
from medvit.data.cache import ShardWriter
from medvit.io.atomic import write_json_atomic
from medvit.data.dataset import CacheDataset
from medvit.data.manifest import label_column, read_manifest
from medvit.zeroshot.backends import bundled_clip_tokenizer, load_transformers
from medvit.zeroshot.baselines import score_baselines
from medvit.zeroshot.embed import embed_dataset
from medvit.zeroshot.preprocess import replicate_mapping
from medvit.zeroshot.prompts import load_prompts

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _figures  # after the sys.path line: benchmarks/ is not a package

LABELS = ("cardiomegaly", "effusion", "nodule", "pneumothorax")
PROMPTS_B = """medical:
  templates:
    positive: ["a frontal radiograph with {label}", "{label} is present"]
    negative: ["a frontal radiograph without {label}", "{label} is absent"]
"""


def make_cache(out: Path, n: int, size: int = 224) -> Path:
    """A cache of ``n`` 1-channel images, 60/20/20 train/val/test."""
    rng = np.random.default_rng(0)
    writer = ShardWriter(out, 256)
    rows = []
    for i in range(n):
        y = (rng.random(len(LABELS)) < 0.4).astype(int)
        shard, index = writer.add(rng.random((1, size, size), dtype=np.float32))
        split = "train" if i % 5 < 3 else "val" if i % 5 == 3 else "test"
        rows.append({"id": f"img{i:05d}", "group": f"p{i:05d}", "split": split, "source": f"synthetic/{i}",
                     "shard": shard, "index": index, **{label_column(n_): int(v) for n_, v in zip(LABELS, y)}})
    writer.flush()
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    write_json_atomic(out / "labels.json", {"label_names": list(LABELS)})
    write_json_atomic(out / "stats.json", {"mean": [0.5], "std": [0.29], "channels": ["grey"], "size": [size, size]})
    return out


def save_random_vit_b16(out: Path) -> Path:
    """Random ViT-B/16 CLIP (224 px) + processor in the save_pretrained layout."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    CLIPModel(CLIPConfig(vision_config={"patch_size": 16, "image_size": 224})).save_pretrained(out)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=bundled_clip_tokenizer()).save_pretrained(out)
    return out


class _Batch:
    """Images ``start:stop`` of a dataset, so the real ``embed_dataset`` runs on one batch."""

    def __init__(self, ds: CacheDataset, start: int, stop: int) -> None:
        self.ds, self.start, self.n = ds, start, stop - start

    def __len__(self) -> int:
        return self.n

    def image(self, i: int) -> np.ndarray:
        return self.ds.image(self.start + i)


def throughput(model_dir: Path, cache: Path, batch_size: int, repeats: int) -> dict[str, float]:
    """img/s: our embedding path vs a plain get_image_features loop, same model object and batch size.

    Batches alternate (plain k, ours k, plain k+1, ...) and the median batch time of
    each is kept, so load from other processes on a shared machine hits both alike.
    """
    backend = load_transformers(str(model_dir))
    ds = CacheDataset(cache, "train")
    rgb = replicate_mapping()
    n = len(ds) // batch_size * batch_size  # full batches only
    pixels = backend.preprocess(rgb(torch.from_numpy(np.stack([ds.image(i) for i in range(n)]))))  # ready-made
    model = backend.model
    with torch.inference_mode():  # warm-up (allocator, kernels): one batch
        model.get_image_features(pixel_values=pixels[:batch_size])
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    for _ in range(repeats):
        for i in range(0, n, batch_size):
            t = time.perf_counter()
            with torch.inference_mode():
                model.get_image_features(pixel_values=pixels[i : i + batch_size])
            times["plain"].append(time.perf_counter() - t)
            t = time.perf_counter()
            embed_dataset(backend, _Batch(ds, i, i + batch_size), rgb, batch_size)  # type: ignore[arg-type]
            times["ours"].append(time.perf_counter() - t)
    ours, plain = float(np.median(times["ours"])), float(np.median(times["plain"]))
    return {"images": n, "batches": len(times["ours"]), "ours_img_s": batch_size / ours,
            "plain_img_s": batch_size / plain, "ratio": plain / ours}


def rerun(model_dir: Path, cache: Path, tmp: Path, batch_size: int) -> dict[str, float]:
    """Seconds of a first run (empty embedding cache) vs a re-run with new prompts."""
    manifest = read_manifest(cache)
    domain = ZeroshotDomain(backend="transformers", model=str(model_dir), rgb="replicate")
    repo_prompts = Path(__file__).resolve().parents[1] / "medvit" / "zeroshot" / "prompts.yaml"
    (tmp / "prompts_b.yaml").write_text(PROMPTS_B)
    times, hashes = [], []
    for prompt_file in (repo_prompts, tmp / "prompts_b.yaml"):
        t = time.perf_counter()
        backend = load_transformers(str(model_dir))  # a re-run is a new process: it loads the model again
        prompts = load_prompts(prompt_file, "medical", manifest.label_names)
        res = score_baselines(backend, cache, manifest, domain, prompts, scoring="chexzero",
                              probe=LinearProbeConfig(), batch_size=batch_size, seed=0,
                              embedding_root=tmp / "emb")
        times.append(time.perf_counter() - t)
        hashes.append(prompts.digest())
        assert all(res.reused.values()) == (len(times) == 2), res.reused
    assert hashes[0] != hashes[1]
    return {"first_s": times[0], "rerun_s": times[1], "speedup": times[0] / times[1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=80, help="cache size (all splits; 60%% train)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="medvit-bench-zs-") as tmp_:
        tmp = Path(tmp_)
        t = time.perf_counter()
        model_dir = save_random_vit_b16(tmp / "clip-vit-b16")
        cache = make_cache(tmp / "cache", args.n_images)
        print(f"setup: random ViT-B/16 CLIP + {args.n_images}-image cache in {time.perf_counter() - t:.1f}s",
              file=sys.stderr)
        tp = throughput(model_dir, cache, args.batch_size, args.repeats)
        rr = rerun(model_dir, cache, tmp, args.batch_size)
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'} ({torch.get_num_threads()} threads), "
          f"batch {args.batch_size}, ViT-B/16 224 px")
    print(f"embedding ({tp['images']} train images x {args.repeats}): ours {tp['ours_img_s']:.2f} img/s, plain get_image_features "
          f"{tp['plain_img_s']:.2f} img/s -> {tp['ratio']:.2f}x (target >= 0.9x)")
    print(f"stage compute ({args.n_images} images): first run {rr['first_s']:.1f}s, re-run with new prompts "
          f"{rr['rerun_s']:.1f}s -> {rr['speedup']:.1f}x faster (target >= 10x)")
    print(json.dumps({"throughput": tp, "rerun": rr}))
    emb = f"ViT-B/16 224px, batch {args.batch_size}"
    _figures.emit("zeroshot", f"embedding img/s, ours ({emb})", tp["ours_img_s"], "img/s")
    _figures.emit("zeroshot", f"embedding img/s, plain get_image_features ({emb})", tp["plain_img_s"], "img/s")
    _figures.emit("zeroshot", "embedding ours / plain get_image_features", tp["ratio"], "x", ">= 0.9")
    _figures.emit("zeroshot", f"stage compute, first run ({args.n_images} images)", rr["first_s"], "s")
    _figures.emit("zeroshot", "stage compute, re-run with new prompts", rr["rerun_s"], "s")
    _figures.emit("zeroshot", "re-run speed-up (first / re-run)", rr["speedup"], "x", ">= 10")
    return 0


if __name__ == "__main__":
    sys.exit(main())
