"""CLIP backends: transformers ``CLIPModel`` and open_clip, from a hub id or a local path.

``load_backend`` returns a ``ClipBackend`` with one interface for both libraries:
``encode_images`` on preprocessed pixels, ``encode_texts`` on prompt strings,
``logit_scale``, the model's own ``preprocess``, and its weights provenance
(``hub:<id>`` | ``local:<path>`` | ``random-init``, the same strings as finetune).

Weights are looked up in the local Hugging Face cache first; when the hub cannot be
reached the loaders run as with ``HF_HUB_OFFLINE=1`` rather than retrying for
minutes. Missing weights raise ``UserError`` naming the model and the fix, unless
``allow_random_init`` is set: then a small random architecture is built from its
config, whatever was configured, and the run is recorded as ``random-init``. The
fallback is ViT-B/32 at 112 px (17 tokens, ~1.1 GFLOPs/image; ~20 img/s per CPU
core): random features carry no zero-shot signal at any size, and 112 px keeps the
offline demo (~1000 satellite chips) well under two minutes on two cores, where
224 px would take ~3x longer.
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

import torch
from torch import nn

from medvit.errors import UserError
from medvit.hashing import sha256_text
from medvit.weights import RANDOM_INIT
from medvit.zeroshot.preprocess import ClipPreprocess

log = logging.getLogger(__name__)

# Random-init fallbacks: ViT-B/32 at 112 px (~1.1 GFLOPs/image) instead of e.g. ViT-B/16 at 224 (17.6).
RANDOM_INIT_IMAGE_SIZE = 112
RANDOM_INIT_ARCH = {
    "transformers": f"CLIPConfig() defaults (ViT-B/32, 12-layer 512-wide text) at {RANDOM_INIT_IMAGE_SIZE} px",
    "open_clip": f"ViT-B-32 at {RANDOM_INIT_IMAGE_SIZE} px",
}
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                     "open_clip_pytorch_model.bin")
INTERPOLATION = {0: "nearest", 2: "bilinear", 3: "bicubic", "bilinear": "bilinear", "bicubic": "bicubic",
                  "nearest": "nearest"}


def default_device() -> torch.device:
    """CUDA when available (fp32 everywhere: CPU bf16 is far slower), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class WeightsMissing(Exception):
    """The configured weights are not available locally (and could not be downloaded)."""


@dataclass
class ClipBackend:
    """A loaded CLIP model behind one interface."""

    backend: str
    model_id: str
    weights: str  # provenance: hub:<id> | local:<path> | random-init
    fingerprint: str  # identity of the weights (embedding cache key)
    arch: str
    preprocess: ClipPreprocess
    model: nn.Module
    _encode_images: Callable[[torch.Tensor], torch.Tensor]
    _encode_texts: Callable[[list[str]], torch.Tensor]

    @property
    def embed_dim(self) -> int:
        """D, the joint embedding width."""
        cfg = getattr(self.model, "config", None)
        return int(cfg.projection_dim) if cfg is not None else int(self.model.visual.output_dim)

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature, exp(logit_scale) (100 for OpenAI CLIP)."""
        return float(self.model.logit_scale.detach().exp().item())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) preprocessed pixels -> (B, D) unnormalised image embeddings (on the CPU)."""
        return self._encode_images(pixels.to(self.device, non_blocking=True)).cpu()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Prompt strings -> (T, D) unnormalised text embeddings (on the CPU)."""
        chunks = [self._encode_texts(texts[i : i + batch_size]).cpu() for i in range(0, len(texts), batch_size)]
        return torch.cat(chunks)

    def describe(self) -> dict[str, Any]:
        """Provenance and preprocessing, for meta.json and MLflow params."""
        return {"backend": self.backend, "model": self.model_id, "weights": self.weights, "arch": self.arch,
                "fingerprint": self.fingerprint, "logit_scale": round(self.logit_scale, 6),
                "preprocess": self.preprocess.spec()}


# ----------------------------------------------------------------------------- hub access
@contextmanager
def hub_access(timeout: float = 3.0) -> Iterator[bool]:
    """Yield whether the hub may be contacted; when it is unreachable, load as with HF_HUB_OFFLINE=1.

    huggingface_hub retries an unreachable host for ~25 s per file; one quick TCP
    probe instead makes an offline machine fall straight back to the local cache.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        yield False
        return
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        yield True  # behind a proxy a direct TCP probe says nothing; let huggingface_hub decide
        return
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        log.info("%s unreachable: using the local Hugging Face cache only (as HF_HUB_OFFLINE=1)", constants.ENDPOINT)
        constants.HF_HUB_OFFLINE = True
        try:
            yield False
        finally:
            constants.HF_HUB_OFFLINE = False
        return
    yield True


def file_identity(*paths: str | Path) -> str:
    """Cheap identity of weight files: resolved path, size and mtime (hub snapshot paths embed the commit)."""
    parts = []
    for p in paths:
        p = Path(p).resolve()
        st = p.stat()
        parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns};")
    return sha256_text("".join(parts), 16)


def _hub_snapshot_identity(repo: str) -> str:
    """``repo@<commit>:<weight files identity>`` of the cached snapshot a hub id resolved to."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo, "config.json")
    if not isinstance(config, str):
        return f"{repo}@unknown-revision"
    snapshot = Path(config).parent
    return f"{repo}@{snapshot.name}:{file_identity(*weight_files(snapshot))}"


def weight_files(folder: Path) -> list[Path]:
    return sorted(p for ext in ("*.safetensors", "*.bin", "*.pth", "*.pt") for p in folder.glob(ext))


def looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1


# ----------------------------------------------------------------------------- transformers
def bundled_clip_tokenizer() -> Any:
    """OpenAI CLIP's BPE tokenizer built offline from the vocabulary shipped in open_clip's wheel.

    Same ids as ``openai/clip-vit-*`` tokenizers (49408 tokens); used when no tokenizer
    files are at hand (the random-init demo).
    """
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]  # as open_clip's SimpleTokenizer
    byte_vocab = list(bytes_to_unicode().values())
    vocab = [*byte_vocab, *(v + "</w>" for v in byte_vocab), *("".join(m) for m in merges),
             "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={v: i for i, v in enumerate(vocab)}, merges=merges)


def _hf_preprocess(ip: Any, image_size: int) -> ClipPreprocess:
    """ClipPreprocess from a CLIPImageProcessor's size, crop, mean, std and resample."""
    size_cfg = dict(getattr(ip, "size", None) or {})
    size = int(size_cfg.get("shortest_edge") or size_cfg.get("height") or image_size)
    crop_cfg = dict(getattr(ip, "crop_size", None) or {})
    crop = int(crop_cfg.get("height") or size) if getattr(ip, "do_center_crop", True) else size
    resample = getattr(ip, "resample", 3)
    resample = getattr(resample, "value", resample)
    return ClipPreprocess(size=size, crop=crop, mean=tuple(float(v) for v in ip.image_mean),  # type: ignore[arg-type]
                          std=tuple(float(v) for v in ip.image_std),  # type: ignore[arg-type]
                          interpolation=INTERPOLATION.get(resample, "bicubic"),
                          resize_mode="shortest" if "shortest_edge" in size_cfg else "squash")


def _transformers_backend(model: nn.Module, processor_ip: Any, tokenizer: Any, model_id: str,
                          weights: str, fingerprint: str, arch: str) -> ClipBackend:
    model = model.to(default_device()).float().eval().requires_grad_(False)
    max_len = int(model.config.text_config.max_position_embeddings)

    def features(out: Any) -> torch.Tensor:
        # transformers >= 5 returns a ModelOutput whose pooler_output is the projected embedding.
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def enc_images(x: torch.Tensor) -> torch.Tensor:
        return features(model.get_image_features(pixel_values=x))

    def enc_texts(texts: list[str]) -> torch.Tensor:
        tok = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        dev = next(model.parameters()).device
        return features(model.get_text_features(input_ids=tok["input_ids"].to(dev),
                                                attention_mask=tok["attention_mask"].to(dev)))

    pre = _hf_preprocess(processor_ip, int(model.config.vision_config.image_size))
    return ClipBackend("transformers", model_id, weights, fingerprint, arch, pre, model, enc_images, enc_texts)


def load_transformers(model_id: str) -> ClipBackend:
    """CLIPModel + CLIPProcessor from a local directory or a hub id (cache first).

    Raises:
        WeightsMissing: the files are neither local nor downloadable.
    """
    from transformers import CLIPModel, CLIPProcessor

    local = Path(model_id).expanduser()
    if looks_like_path(model_id) and not local.is_dir():
        raise WeightsMissing(f"local directory {local} not found")
    source = str(local) if local.is_dir() else model_id
    try:
        with hub_access():
            model = CLIPModel.from_pretrained(source, dtype=torch.float32)
            processor = CLIPProcessor.from_pretrained(source)
    except OSError as err:
        raise WeightsMissing(f"{type(err).__name__}: {str(err).splitlines()[0][:300]}") from err
    if local.is_dir():
        weights, fingerprint = f"local:{local.resolve()}", file_identity(*weight_files(local))
    else:
        weights, fingerprint = f"hub:{model_id}", _hub_snapshot_identity(model_id)
    vc = model.config.vision_config
    arch = f"CLIP ViT patch{vc.patch_size} {vc.image_size}px width{vc.hidden_size} depth{vc.num_hidden_layers}"
    return _transformers_backend(model, processor.image_processor, processor.tokenizer, model_id,
                                 weights, f"transformers:{fingerprint}", arch)


def random_transformers(model_id: str, seed: int) -> ClipBackend:
    """Randomly initialised CLIP from transformers' default config (ViT-B/32) at 112 px; no download."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    size = RANDOM_INIT_IMAGE_SIZE
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(vision_config={"image_size": size}))
    ip = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    fingerprint = f"transformers:{RANDOM_INIT}:vit-b-32-{size}:seed{seed}:torch{torch.__version__}"
    return _transformers_backend(model, ip, bundled_clip_tokenizer(), model_id, RANDOM_INIT,
                                 fingerprint, RANDOM_INIT_ARCH["transformers"])


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Silence a library's own 'initialized randomly' warning: we log our own, louder one."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# ----------------------------------------------------------------------------- entry point
def load_backend(backend: str, model_id: str, weights: str | None = None, *, allow_random_init: bool = False,
                 seed: int = 0) -> ClipBackend:
    """Load the configured CLIP, or (``allow_random_init``) a random ViT-B/32 demo model.

    Raises:
        UserError: weights missing and random init not allowed (names the model and the fix).
    """
    try:
        if backend == "transformers":
            return load_transformers(model_id)
        if backend == "open_clip":
            from medvit.zeroshot.open_clip_backend import load_open_clip

            return load_open_clip(model_id, weights)
        raise UserError(f"zeroshot backend {backend!r}: expected transformers or open_clip")
    except WeightsMissing as err:
        what = f"{model_id}" + (f" (weights {weights})" if weights else "")
        if not allow_random_init:
            raise UserError(
                f"zeroshot: CLIP weights for {what} are not available ({err}). This machine cannot download them: "
                f"pre-download them into the Hugging Face cache on a connected machine (e.g. "
                f"`huggingface-cli download <repo>`; then HF_HUB_OFFLINE=1 works), or point zeroshot.<domain>.model "
                f"at a local folder. To run the pipeline anyway with an untrained model, set "
                f"zeroshot.allow_random_init: true (demo only; recorded as weights=random-init)."
            ) from None
        log.warning("=" * 78)
        log.warning("zeroshot: weights for %s are NOT available (%s).", what, err)
        log.warning("zeroshot: allow_random_init is set: using a RANDOMLY INITIALISED %s (%s backend).",
                    RANDOM_INIT_ARCH[backend], backend)
        log.warning("zeroshot: its scores are a demo, not a CLIP baseline; recorded as weights=random-init.")
        log.warning("=" * 78)
        if backend == "transformers":
            return random_transformers(model_id, seed)
        from medvit.zeroshot.open_clip_backend import random_open_clip

        return random_open_clip(model_id, seed)
