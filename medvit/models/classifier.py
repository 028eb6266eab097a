"""The fine-tuned classifier: partially frozen timm ViT + multi-label head, saved as safetensors + meta.json.

``models/<domain>/meta.json`` (written by finetune, read by evaluate/register)::

    {"model": timm name, "img_size": int, "in_chans": int, "label_names": [...],
     "head": {"hidden_dim", "dropout"}, "mean": [C], "std": [C], "weights": provenance,
     "pipeline_id", "run_id", "data_hash", "params_hash", "freeze_blocks",
     "model_kwargs": {...}}   # optional extra timm kwargs (tiny test models)

The classifier takes (B, C, H, W) images already resized to ``img_size`` and
normalised with ``mean``/``std`` (see ``medvit.data.transforms.eval_transform``)
and returns (B, L) logits; scores are their sigmoid.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Mapping

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medvit.io.atomic import atomic_open, atomic_path
from medvit.models.backbone import STEM_PARAM_PATTERN, explicit_attention, freeze, prefix_modules, run_prefix
from medvit.models.head import MultiLabelHead

WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"


class Classifier(nn.Module):
    """Backbone blocks split into a frozen prefix (no autograd graph) and a trained suffix, plus the head.

    ``group_matcher`` and ``no_weight_decay`` follow timm's model interface, so
    ``timm.optim.create_optimizer_v2(..., layer_decay=...)`` groups our parameters:
    the stem is layer 0, block i is layer i + 1, and the final norm and the head
    share the top layer (BEiT/DeiT3 layer-wise LR decay).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, freeze_blocks: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.freeze_blocks = freeze_blocks
        self.frozen_names = freeze(backbone, freeze_blocks)

    @property
    def frozen(self) -> bool:
        return self.freeze_blocks > 0

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm layer grouping: stem first, then one group per block; unmatched (norm, head) come last."""
        del coarse  # one layer per block either way
        stem = STEM_PARAM_PATTERN.replace("^(", r"^backbone\.(", 1)
        return {"stem": stem, "blocks": [(r"^backbone\.blocks\.(\d+)\.", None)]}

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Embeddings and tokens (1-D norm weights and biases are excluded by timm's ``ndim <= 1`` rule)."""
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}

    def train(self, mode: bool = True) -> "Classifier":
        """Set train mode, but keep the frozen prefix in eval mode (fixed features, no dropout there)."""
        super().train(mode)
        if self.frozen:
            for m in prefix_modules(self.backbone, self.freeze_blocks):
                m.eval()
        return self

    def forward_prefix(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, T, D) tokens after the frozen prefix (embeddings only when nothing is frozen).

        The frozen part runs under ``torch.no_grad``, so no autograd graph is built for it.
        """
        if not self.frozen:
            return run_prefix(self.backbone, x, 0)
        with torch.no_grad():
            return run_prefix(self.backbone, x, self.freeze_blocks)

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, D) prefix tokens -> (B, L) logits through the trained blocks, final norm and head."""
        for blk in self.backbone.blocks[self.freeze_blocks :]:
            tokens = blk(tokens)
        tokens = self.backbone.norm(tokens)
        feats = self.backbone.forward_head(tokens, pre_logits=True)  # (B, D)
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalised images -> (B, L) logits.

        A 3-D input is taken as precomputed prefix tokens (B, T, D) (frozen-feature caching).
        """
        return self.forward_tokens(x if x.ndim == 3 else self.forward_prefix(x))


def build_classifier(meta: Mapping[str, Any], fused_attn: bool = True) -> Classifier:
    """Build the classifier described by ``meta`` (no weights loaded).

    Args:
        meta: the meta.json mapping (model, img_size, in_chans, label_names, head, freeze_blocks, ...).
        fused_attn: False builds the blocks with explicit attention (for attention rollout).
    """
    kwargs: dict[str, Any] = dict(meta.get("model_kwargs") or {})
    with contextlib.nullcontext() if fused_attn else explicit_attention():
        backbone = timm.create_model(
            meta["model"], pretrained=False, num_classes=0, in_chans=int(meta["in_chans"]),
            img_size=int(meta["img_size"]), **kwargs,
        )
    head_cfg = meta.get("head") or {}
    head = MultiLabelHead(
        backbone.num_features, len(meta["label_names"]),
        hidden_dim=int(head_cfg.get("hidden_dim", 256)), dropout=float(head_cfg.get("dropout", 0.0)),
    )
    return Classifier(backbone, head, int(meta.get("freeze_blocks", 0)))


def save_classifier(model: nn.Module, meta: Mapping[str, Any], model_dir: str | Path) -> None:
    """Write ``model.safetensors`` and ``meta.json`` atomically (temporary file, then rename)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(model_dir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_open(model_dir / META_FILE, "w") as f:
        json.dump(dict(meta), f, indent=2, sort_keys=True)
        f.write("\n")


def load_classifier(model_dir: str | Path, device: str | torch.device = "cpu",
                    fused_attn: bool = True) -> tuple[Classifier, dict[str, Any]]:
    """Load ``meta.json`` + ``model.safetensors`` from ``model_dir``; the model is returned in eval mode.

    ``fused_attn=False`` builds explicit attention blocks (attention rollout reads their matrices).

    Raises:
        FileNotFoundError: naming the missing file and the stage that writes it.
    """
    model_dir = Path(model_dir)
    for name in (META_FILE, WEIGHTS_FILE):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"{model_dir / name}: missing; run the finetune stage (`dvc repro finetune`)")
    meta = json.loads((model_dir / META_FILE).read_text())
    state = load_file(model_dir / WEIGHTS_FILE, device=str(device))
    # Built on the meta device: timm's random init (~0.7 s for a DeiT-S on 2 cores) would only be
    # overwritten; assign=True makes the loaded tensors the parameters (requires_grad kept).
    with torch.device("meta"):
        model = build_classifier(meta, fused_attn)
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # a buffer not saved in the state dict
        model = build_classifier(meta, fused_attn)
        model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta
