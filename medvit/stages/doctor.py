"""Check the installation: versions, DICOM decoders (and any GPL plugin), GDAL, the MLflow
tracking store and whether it is reachable, the de-identification key source, where each
configured pretrained weights reference would load from, and torch threads.

Exits 1 when a configured weights reference cannot resolve and its stage does not allow
random initialisation (the stage would fail), else 0.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
from dataclasses import dataclass
from pathlib import Path

from medvit.config import DOMAINS, ConfigError, Params, load_params

HELP = "Check versions, decoders, GDAL, MLflow, the de-id key, pretrained weights and torch threads."

_PACKAGES = ("medvit", "torch", "timm", "transformers", "open_clip_torch", "mlflow", "dvc", "pydicom",
             "rasterio", "albumentations", "scikit-learn", "python-gdcm", "pylibjpeg",
             "pylibjpeg-openjpeg", "pylibjpeg-rle", "pillow", "onnxruntime")
# Decoder plugins under the GPL: pydicom uses them when installed, which would put GPL code in the pipeline.
GPL_PLUGINS = ("pylibjpeg-libjpeg",)
# Files that hold a hub repo's weights, in timm, open_clip and transformers layouts.
_HUB_WEIGHTS = ("model.safetensors", "open_clip_model.safetensors", "open_clip_pytorch_model.bin",
                "pytorch_model.bin")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file whose weights to check (default: %(default)s)")


def _version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class WeightsStatus:
    """Where a weights reference would load from; ``found`` False when it cannot resolve offline."""

    found: bool
    where: str


def _hf_cache_dir() -> str:
    """The hub cache huggingface_hub would use now (env read at call time, not at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _cached(repo: str, filenames: tuple[str, ...]) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        hit = try_to_load_from_cache(repo, name, cache_dir=_hf_cache_dir())
        if isinstance(hit, str):
            return hit
    return None


def weights_status(ref: str | None, with_file: bool = False) -> WeightsStatus:
    """Resolve a weights reference without loading it: local path, HF cache, hub (online) or missing.

    Args:
        ref: ``none``, a local path (optionally ``local:`` / ``local-dir:``), a hub repo id
            (``timm/<model>.<tag>``, ``org/repo``, ``hf-hub:org/repo``).
        with_file: ``ref`` names a file in the repo (``hf-hub:org/repo/file.pt``, open_clip weights).
    """
    if ref is None or ref.strip().lower() in ("", "none", "null", "random", "random-init"):
        return WeightsStatus(False, "none (random init)")
    path = Path(ref.removeprefix("local-dir:").removeprefix("local:")).expanduser()
    if path.exists():
        return WeightsStatus(True, f"local path {path}")
    hub = ref.removeprefix("hf-hub:").removeprefix("hf_hub:")
    repo, files = (hub.rpartition("/")[0], (hub.rpartition("/")[2],)) if with_file else (hub, _HUB_WEIGHTS)
    if ref.startswith(("local:", "local-dir:", "/", ".", "~")) or repo.count("/") != 1:
        return WeightsStatus(False, "NOT FOUND (neither an existing local path nor a hub id)")
    try:
        hit = _cached(repo, files)  # the timm tag is part of the hub repo name: timm/<model>.<tag>
    except Exception as err:  # noqa: BLE001 - a malformed id or cache: report it, do not crash the check
        return WeightsStatus(False, f"unknown ({type(err).__name__}: {err})")
    if hit:
        return WeightsStatus(True, f"HF cache ({hit})")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return WeightsStatus(False, "NOT in the local HF cache and HF_HUB_OFFLINE=1")
    return WeightsStatus(True, "not in the local HF cache; needs a hub download (online)")


def _open_clip_tag_repo(arch: str, tag: str) -> str | None:
    """The hub repo an open_clip pretrained tag downloads from (``hf-hub:org/repo``), if open_clip names one."""
    import open_clip

    hub = (open_clip.get_pretrained_cfg(arch.replace("/", "-"), tag) or {}).get("hf_hub", "")
    return f"hf-hub:{hub.strip('/')}" if hub else None


def weights_refs(p: Params) -> list[tuple[str, str | None, bool, bool]]:
    """(params key, reference, names a file, random init allowed) for every configured pretrained weights."""
    refs = [("finetune.weights", p.finetune.weights, False, p.finetune.allow_random_init)]
    for d in DOMAINS:
        cfg = getattr(p.zeroshot, d)
        builtin = (cfg.backend == "open_clip" and not cfg.model.startswith(("hf-hub:", "local-dir:"))
                   and not Path(cfg.model).expanduser().exists())
        if builtin:  # an open_clip architecture: the checkpoint is `weights` (hf-hub:org/repo/file, file or tag)
            ref, with_file = cfg.weights, bool(cfg.weights and cfg.weights.startswith("hf-hub:"))
            if ref and not with_file and not Path(ref).suffix and "/" not in ref:
                ref = _open_clip_tag_repo(cfg.model, ref) or ref
            refs.append((f"zeroshot.{d}.weights", ref, with_file, p.zeroshot.allow_random_init))
        else:
            refs.append((f"zeroshot.{d}.model", cfg.model, False, p.zeroshot.allow_random_init))
    return refs


def _tracking() -> list[str]:
    from medvit.tracking.runs import probe, tracking_uri

    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        why = probe(uri)
        return [f"tracking URI: {uri}", f"server: {'UNREACHABLE - ' + why if why else 'reachable'}"]
    return [f"tracking URI: {uri}", "server: none (local store)"]


def run(args: argparse.Namespace, params: Params | None) -> int:
    import rasterio
    import torch

    from medvit.deid import KEY_ENV, KEY_FILE, load_key
    from medvit.io.decoders import decoder_table

    print("== versions")
    for name in _PACKAGES:
        print(f"  {name:<20} {_version(name)}")
    print(f"  {'GDAL':<20} {rasterio.__gdal_version__}")
    print("== DICOM decoders (transfer syntax: available plugins)")
    for uid, name, plugins in decoder_table():
        print(f"  {name:<38} {uid:<24} {', '.join(plugins) or 'NONE - install a decoder (see README)'}")
    gpl = [f"{n} {_version(n)}" for n in GPL_PLUGINS if _version(n) != "not installed"]
    print(f"  GPL decoder plugins: {', '.join(gpl) + ' (GPLv3: uninstall unless you accept it)' if gpl else 'none'}")
    print("== MLflow")
    for line in _tracking():
        print(f"  {line}")
    print("== de-identification key")
    source = load_key()[1]
    hint = f" - PUBLIC, set ${KEY_ENV} or write {KEY_FILE} before real data" if source == "demo-default" else ""
    print(f"  source: {source}{hint}")
    print("== pretrained weights")
    failed = []
    try:
        for key, ref, with_file, allow_random in weights_refs(load_params(args.params)):
            status = weights_status(ref, with_file)
            ok = status.found or allow_random
            print(f"  {key:<27} {ref}: {status.where}"
                  + ("" if status.found else (" (random init allowed)" if ok else " - the stage will FAIL")))
            if not ok:
                failed.append(key)
    except ConfigError as err:
        print(f"  (cannot read params: {err})")
        failed.append("params")
    print("== torch")
    print(f"  threads: {torch.get_num_threads()}  cuda: {torch.cuda.is_available()}")
    if failed:
        print(f"medvit doctor: {', '.join(failed)} cannot resolve and random init is not allowed; "
              "pre-download the weights into the HF cache or point the key at a local path.")
    return 1 if failed else 0
