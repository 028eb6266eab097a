"""open_clip CLIP backends (``hf-hub:`` repos, local folders, built-in architectures with a
pretrained tag, checkpoint file or ``hf-hub:org/repo/file`` weights) and the random-init ViT-B-32
fallback; the transformers backends and the common interface are in ``medvit.zeroshot.backends``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from medvit.errors import UserError
from medvit.weights import RANDOM_INIT
from medvit.zeroshot.backends import (
    INTERPOLATION,
    OPEN_CLIP_CONFIG,
    OPEN_CLIP_WEIGHTS,
    RANDOM_INIT_ARCH,
    RANDOM_INIT_IMAGE_SIZE,
    ClipBackend,
    WeightsMissing,
    default_device,
    file_identity,
    hub_access,
    looks_like_path,
    quiet_logger,
    weight_files,
)
from medvit.zeroshot.preprocess import ClipPreprocess


def open_clip_backend(model: nn.Module, tokenizer: Any, model_id: str, weights: str, fingerprint: str,
                       arch: str) -> ClipBackend:
    model = model.to(default_device()).float().eval().requires_grad_(False)
    pp = model.visual.preprocess_cfg
    size = pp["size"]
    size = int(max(size)) if isinstance(size, (tuple, list)) else int(size)
    pre = ClipPreprocess(size=size, crop=size, mean=tuple(float(v) for v in pp["mean"]),  # type: ignore[arg-type]
                         std=tuple(float(v) for v in pp["std"]),  # type: ignore[arg-type]
                         interpolation=INTERPOLATION.get(pp.get("interpolation", "bicubic"), "bicubic"),
                         resize_mode=pp.get("resize_mode", "shortest"), fill=float(pp.get("fill_color", 0)))

    def enc_texts(texts: list[str]) -> torch.Tensor:
        return model.encode_text(tokenizer(texts).to(next(model.parameters()).device))

    return ClipBackend("open_clip", model_id, weights, f"open_clip:{fingerprint}", arch, pre, model,
                       model.encode_image, enc_texts)


def _hub_file(repo: str, filenames: tuple[str, ...]) -> str:
    """Path of the first of ``filenames`` found in the cache or on the hub."""
    from huggingface_hub import hf_hub_download

    errors = []
    for name in filenames:
        try:
            return hf_hub_download(repo, name)
        except Exception as err:  # noqa: BLE001 - any lookup failure means "not available", reported below
            errors.append(f"{name}: {type(err).__name__}")
    raise WeightsMissing(f"{repo} has none of {list(filenames)} in the local cache or on the hub ({'; '.join(errors)})")


def load_open_clip(model_id: str, weights: str | None = None) -> ClipBackend:
    """open_clip model from ``hf-hub:org/repo``, ``local-dir:/path`` (or a folder), or a built-in name + ``weights``.

    ``weights`` (built-in names only) is a pretrained tag (``openai``), a local
    checkpoint file, or ``hf-hub:org/repo/file`` (e.g. RemoteCLIP's ``.pt``).

    Raises:
        WeightsMissing: config or checkpoint not available locally or on the hub.
        UserError: unknown architecture or pretrained tag.
    """
    import open_clip

    with hub_access():
        try:
            if model_id.startswith("hf-hub:"):
                repo = model_id[len("hf-hub:"):]
                _hub_file(repo, ("open_clip_config.json",))
                ckpt = _hub_file(repo, OPEN_CLIP_WEIGHTS)
                model = open_clip.create_model(model_id)
                tokenizer = open_clip.get_tokenizer(model_id)
                provenance, arch = f"hub:{repo}", repo
            elif model_id.startswith("local-dir:") or Path(model_id).expanduser().is_dir():
                folder = Path(model_id.removeprefix("local-dir:")).expanduser().resolve()
                if not (folder / OPEN_CLIP_CONFIG).is_file():
                    raise WeightsMissing(f"{folder / OPEN_CLIP_CONFIG} not found")
                files = weight_files(folder)
                if not files:
                    raise WeightsMissing(f"no checkpoint (*.safetensors, *.bin, *.pth) in {folder}")
                ckpt = str(files[0])
                model = open_clip.create_model(f"local-dir:{folder}")
                tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
                provenance, arch = f"local:{folder}", folder.name
            else:
                arch = model_id.replace("/", "-")
                if arch not in open_clip.list_models():
                    raise UserError(f"zeroshot: open_clip has no architecture {model_id!r}; use hf-hub:org/repo, "
                                    f"local-dir:/path, or one of {open_clip.list_models()[:12]}...")
                ckpt, provenance = _open_clip_checkpoint(arch, weights)
                model = open_clip.create_model(arch, pretrained=ckpt)
                tokenizer = open_clip.get_tokenizer(arch)
        except OSError as err:
            raise WeightsMissing(f"{type(err).__name__}: {str(err).splitlines()[0][:300]}") from err
    return open_clip_backend(model, tokenizer, model_id, provenance, file_identity(ckpt), arch)


def _open_clip_checkpoint(arch: str, weights: str | None) -> tuple[str, str]:
    """(checkpoint path, provenance) of a built-in architecture's ``weights``."""
    import open_clip

    if not weights:
        raise WeightsMissing(f"no weights configured for the built-in architecture {arch}")
    if weights.startswith("hf-hub:"):
        repo, _, filename = weights[len("hf-hub:"):].rpartition("/")
        if not repo or not filename:
            raise UserError(f"zeroshot weights {weights!r}: expected hf-hub:org/repo/filename")
        return _hub_file(repo, (filename,)), f"hub:{repo}/{filename}"
    path = Path(weights).expanduser()
    if path.is_file():
        return str(path.resolve()), f"local:{path.resolve()}"
    cfg = open_clip.get_pretrained_cfg(arch, weights)
    if not cfg:
        if looks_like_path(weights) or path.suffix:
            raise WeightsMissing(f"checkpoint file {path} not found")
        raise UserError(f"zeroshot weights {weights!r}: not a file and not a pretrained tag of {arch}; "
                        f"tags: {open_clip.list_pretrained_tags_by_model(arch)}")
    try:
        return open_clip.download_pretrained(cfg), f"hub:open_clip/{arch}/{weights}"
    except Exception as err:  # noqa: BLE001 - open_clip wraps download failures in several types
        raise WeightsMissing(f"pretrained tag {weights}: {type(err).__name__}: {err}") from err


def random_open_clip(model_id: str, seed: int) -> ClipBackend:
    """Randomly initialised open_clip ViT-B-32 at 112 px with the bundled CLIP tokenizer; no download."""
    import open_clip

    size = RANDOM_INIT_IMAGE_SIZE
    torch.manual_seed(seed)
    with quiet_logger("root"):
        model = open_clip.create_model("ViT-B-32", force_image_size=size)
    fingerprint = f"{RANDOM_INIT}:vit-b-32-{size}:seed{seed}:torch{torch.__version__}"
    return open_clip_backend(model, open_clip.get_tokenizer("ViT-B-32"), model_id, RANDOM_INIT, fingerprint,
                              RANDOM_INIT_ARCH["open_clip"])
