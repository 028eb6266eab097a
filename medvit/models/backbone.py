"""The timm ViT backbone: creation, pretrained weights, and the frozen prefix (defined once here).

Weights references (``finetune.weights``):

* a hub id, ``timm/<name>.<tag>`` or ``hf-hub:timm/...``: loaded through timm's
  Hugging Face path, so ``HF_HUB_OFFLINE=1`` with a populated HF cache works;
* a local ``.safetensors`` / ``.pth`` / ``.bin`` file (``torch.load(weights_only=True)``),
  or a directory holding one (``model.safetensors`` preferred, as timm saves for the hub);
* ``none``: random initialisation (only with ``allow_random_init``).

Every reference goes through timm's ``load_pretrained``: it applies the model's
checkpoint filter (position embeddings resampled to ``img_size``), adapts the
first conv to ``in_chans`` (timm's ``adapt_input_conv``: channel repeat/sum scaled
to 3/in_chans) and drops the ImageNet classifier.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import timm
import torch
from timm.layers import set_fused_attn, use_fused_attn
from torch import nn

from medvit.errors import UserError
from medvit.weights import RANDOM_INIT

log = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def weights_kind(ref: str) -> str:
    """Classify a weights reference: ``none``, ``local`` or ``hub``."""
    ref = ref.strip()
    if ref.lower() in ("", "none", "null", RANDOM_INIT):
        return "none"
    if ref.startswith("hf-hub:"):
        return "hub"
    p = Path(ref).expanduser()
    if p.exists() or ref.startswith((".", "/", "~")) or ref.endswith(_WEIGHT_SUFFIXES):
        return "local"
    return "hub"


def _hub_id(ref: str) -> str:
    return ref[len("hf-hub:"):] if ref.startswith("hf-hub:") else ref


def _overlay(ref: str) -> tuple[dict[str, Any], str]:
    """timm ``pretrained_cfg_overlay`` and the provenance string for a reference."""
    kind = weights_kind(ref)
    if kind == "hub":
        hub_id = _hub_id(ref)
        # source=hf-hub forces timm's HF path (hf_hub_download honours HF_HUB_OFFLINE / HF_HUB_CACHE).
        return {"hf_hub_id": hub_id, "source": "hf-hub", "file": None, "url": None}, f"hub:{hub_id}"
    path = Path(ref).expanduser().resolve()
    if path.is_dir():
        return {"file": str(path), "source": "local-dir", "hf_hub_id": None, "url": None}, f"local:{path}"
    if path.is_file():
        return {"file": str(path), "source": "", "hf_hub_id": None, "url": None}, f"local:{path}"
    raise FileNotFoundError(path)


def _missing_message(ref: str, name: str, err: BaseException) -> str:
    kind = weights_kind(ref)
    if kind == "local":
        where = f"local weights '{ref}' not found or unreadable ({type(err).__name__}: {err})"
        fix = "point finetune.weights at an existing .safetensors/.pth file or a folder holding model.safetensors"
    else:
        where = (f"hub weights '{_hub_id(ref)}' are not in the local Hugging Face cache and the hub is "
                 f"unreachable ({type(err).__name__}: {err})")
        fix = (f"on a connected machine run `huggingface-cli download {_hub_id(ref)}` and copy the HF cache "
               "(HF_HUB_CACHE) here, or set finetune.weights to a local file")
    return (f"finetune.weights: {where} for model '{name}'. Fix: {fix}; or, for a demo only, set "
            "finetune.allow_random_init: true to train from random weights (recorded as 'random-init').")


@contextlib.contextmanager
def explicit_attention() -> Iterator[None]:
    """timm models built inside compute attention explicitly (``set_fused_attn(False)``), so the
    matrix can be read (attention rollout); timm reads the flag when a block is built."""
    experimental, fused = use_fused_attn(experimental=True), use_fused_attn()
    set_fused_attn(False)
    try:
        yield
    finally:
        set_fused_attn(fused or experimental, experimental=experimental)


def create_backbone(
    name: str,
    *,
    in_chans: int,
    img_size: int | None = None,
    weights: str = "none",
    allow_random_init: bool = False,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, str]:
    """Create a timm ViT without its classifier, loading ``weights`` if given.

    Args:
        name: timm architecture, e.g. ``deit3_base_patch16_384``.
        in_chans: input channels of the data (1 for DICOM, N bands for GeoTIFF).
        img_size: input size; None keeps the architecture's default.
        weights: hub id, local file/dir, or ``none``.
        allow_random_init: continue with random weights (loudly) when weights are missing.
        model_kwargs: extra timm kwargs (tests use tiny depth/embed_dim).

    Returns:
        (backbone with ``num_classes=0``, provenance ``hub:<id>`` | ``local:<path>`` | ``random-init``).

    Raises:
        UserError: weights are missing and random init is not allowed, or the name is unknown.
    """
    kwargs: dict[str, Any] = {"in_chans": in_chans, "num_classes": 0, **(model_kwargs or {})}
    if img_size is not None:
        kwargs["img_size"] = img_size
    if not timm.is_model(name.split(".")[0]):
        raise UserError(f"finetune.model: '{name}' is not a timm model; see `timm.list_models('*vit*')`")
    if weights_kind(weights) != "none":
        try:
            overlay, provenance = _overlay(weights)
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
            log.info("loaded backbone weights %s", provenance)
            return model, provenance
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            # OSError covers FileNotFoundError and huggingface_hub's offline/not-cached errors.
            msg = _missing_message(weights, name, err)
            if not allow_random_init:
                raise UserError(msg) from None
            warnings.warn(f"{msg}\n!!! CONTINUING WITH RANDOM WEIGHTS (allow_random_init) -- NOT PRETRAINED !!!",
                          stacklevel=2)
    elif not allow_random_init:
        raise UserError(
            "finetune.weights is 'none': training from random weights is a demo, not a model. Fix: set "
            "finetune.weights to a hub id (timm/deit3_base_patch16_384.fb_in22k_ft_in1k) or a local file, "
            "or set finetune.allow_random_init: true to accept a random-init demo model."
        )
    else:
        warnings.warn("!!! finetune.weights is 'none': RANDOM-INIT backbone, NOT PRETRAINED (demo only) !!!",
                      stacklevel=2)
    return timm.create_model(name, pretrained=False, **kwargs), RANDOM_INIT


# The frozen prefix, defined once: the stem (patch embedding, class/register tokens, position
# embedding, pre-norm) plus the first K blocks. Freezing, the frozen-feature cache, the optimizer's
# layer grouping and the benchmarks' FLOP counts all read it from here.
STEM_PARAM_PATTERN = r"^(?:patch_embed\.|norm_pre\.|pos_embed$|cls_token$|reg_token$|dist_token$)"
_STEM_MODULES = ("patch_embed", "pos_drop", "patch_drop", "norm_pre")


def check_prefix_depth(backbone: nn.Module, num_blocks: int) -> None:
    """Raise if ``num_blocks`` exceeds the backbone's depth.

    Raises:
        UserError: naming ``finetune.freeze_blocks`` and the valid range.
    """
    depth = len(backbone.blocks)
    if not 0 <= num_blocks <= depth:
        raise UserError(f"finetune.freeze_blocks={num_blocks} exceeds the model depth {depth}; use 0..{depth}")


def prefix_param_names(backbone: nn.Module, num_blocks: int) -> list[str]:
    """Parameter names of the frozen prefix: the stem and blocks ``0..num_blocks-1`` (none for 0)."""
    check_prefix_depth(backbone, num_blocks)
    if num_blocks == 0:
        return []
    stem = re.compile(STEM_PARAM_PATTERN)
    return [n for n, _ in backbone.named_parameters()
            if stem.match(n) or (n.startswith("blocks.") and int(n.split(".")[1]) < num_blocks)]


def prefix_modules(backbone: nn.Module, num_blocks: int) -> list[nn.Module]:
    """Modules the prefix runs (stem modules, then the first ``num_blocks`` blocks)."""
    check_prefix_depth(backbone, num_blocks)
    return [getattr(backbone, m) for m in _STEM_MODULES] + list(backbone.blocks[:num_blocks])


def run_prefix(backbone: nn.Module, x: torch.Tensor, num_blocks: int) -> torch.Tensor:
    """(B, C, H, W) images -> (B, T, D) tokens after the stem and the first ``num_blocks`` blocks."""
    x = backbone.patch_embed(x)
    x = backbone._pos_embed(x)  # timm's own token + position embedding step (no public equivalent)
    x = backbone.norm_pre(backbone.patch_drop(x))
    for blk in backbone.blocks[:num_blocks]:
        x = blk(x)
    return x


def freeze(backbone: nn.Module, num_blocks: int) -> list[str]:
    """Freeze the prefix of ``num_blocks`` blocks (0 freezes nothing).

    Returns:
        Names of the frozen parameters.

    Raises:
        UserError: ``num_blocks`` exceeds the depth.
    """
    frozen = prefix_param_names(backbone, num_blocks)
    wanted = set(frozen)
    for n, p in backbone.named_parameters():
        if n in wanted:
            p.requires_grad_(False)
    return frozen
