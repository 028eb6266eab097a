"""Check the installation: versions, DICOM decoders per transfer syntax, MLflow URI,
reachability of the configured pretrained weights, and torch threads.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
from pathlib import Path

from medvit.config import DOMAINS, ConfigError, Params, load_params

HELP = "Check versions, DICOM decoders, MLflow URI, pretrained weights and torch threads."

_PACKAGES = ("medvit", "torch", "timm", "transformers", "open_clip_torch", "mlflow", "dvc", "pydicom",
             "rasterio", "albumentations", "scikit-learn", "python-gdcm", "pylibjpeg",
             "pylibjpeg-openjpeg", "pylibjpeg-rle", "pillow", "onnxruntime")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file whose weights to check (default: %(default)s)")


def _version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


def weights_status(ref: str) -> str:
    """Where a weights reference would load from: local path, HF cache, hub (online) or missing."""
    if ref.lower() in ("none", "", "random"):
        return "none (random init)"
    path = Path(ref.removeprefix("local:"))
    if path.exists():
        return f"local path {path}"
    repo = ref.removeprefix("hf-hub:").removeprefix("hf_hub:")
    if "/" in repo:
        try:
            from huggingface_hub import try_to_load_from_cache

            for fname in ("model.safetensors", "open_clip_model.safetensors", "open_clip_pytorch_model.bin",
                          "pytorch_model.bin", "config.json"):
                hit = try_to_load_from_cache(repo.split(".")[0] if repo.startswith("timm/") else repo, fname)
                if isinstance(hit, str):
                    return f"HF cache ({hit})"
        except Exception as err:  # noqa: BLE001
            return f"unknown ({err})"
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        return "NOT in the local cache" + (" and HF_HUB_OFFLINE=1" if offline else "; needs a hub download")
    return "NOT FOUND (neither a local path nor a hub id)"


def run(args: argparse.Namespace, params: Params | None) -> int:
    import torch

    from medvit.io.decoders import decoder_table
    from medvit.tracking.runs import tracking_uri

    print("== versions")
    for name in _PACKAGES:
        print(f"  {name:<20} {_version(name)}")
    print("== DICOM decoders (transfer syntax: available plugins)")
    for uid, name, plugins in decoder_table():
        print(f"  {name:<38} {uid:<24} {', '.join(plugins) or 'NONE - install a decoder (see README)'}")
    print("== MLflow")
    print(f"  tracking URI: {tracking_uri()}")
    print("== pretrained weights")
    try:
        p = load_params(args.params)
        refs = {"finetune.weights": p.finetune.weights}
        refs.update({f"zeroshot.{d}.model": getattr(p.zeroshot, d).model for d in DOMAINS})
        for key, ref in refs.items():
            print(f"  {key:<22} {ref}: {weights_status(ref)}")
    except ConfigError as err:
        print(f"  (cannot read params: {err})")
    print("== torch")
    print(f"  threads: {torch.get_num_threads()}  cuda: {torch.cuda.is_available()}")
    return 0
