"""Tiny CLIP checkpoints written locally in the real on-disk layouts of both backends.

* transformers: ``CLIPModel.save_pretrained`` + ``CLIPProcessor.save_pretrained`` (tokenizer
  built offline from the CLIP BPE vocabulary that open_clip's wheel ships).
* open_clip: ``open_clip_config.json`` + ``open_clip_model.safetensors`` in a folder (the
  ``local-dir:`` / ``hf-hub:`` layout).
* ``hub_cache``: a Hugging Face cache layout (models--org--name/snapshots/<commit>/...) used
  offline, as on a machine where the weights were pre-downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

TINY_SIZE = 32
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _tiny_transformers(out: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from medvit.zeroshot.backends import bundled_clip_tokenizer

    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(image_size=TINY_SIZE, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(out)
    ip = CLIPImageProcessor(size={"shortest_edge": TINY_SIZE}, crop_size={"height": TINY_SIZE, "width": TINY_SIZE})
    CLIPProcessor(image_processor=ip, tokenizer=bundled_clip_tokenizer()).save_pretrained(out)
    return out


def _tiny_open_clip(out: Path) -> Path:
    import open_clip
    from safetensors.torch import save_file

    model_cfg = {"embed_dim": 16,
                 "vision_cfg": {"image_size": TINY_SIZE, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}}))
    torch.manual_seed(1)
    model = open_clip.CLIP(**model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    return out


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny transformers CLIP saved with save_pretrained (model + processor)."""
    return _tiny_transformers(tmp_path_factory.mktemp("tiny-clip-hf"))


@pytest.fixture(scope="session")
def tiny_open_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny open_clip model folder: open_clip_config.json + open_clip_model.safetensors."""
    return _tiny_open_clip(tmp_path_factory.mktemp("tiny-clip-oc"))


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - returns a factory
    """Factory ``hub_cache(repo_id, folder)``: copy a model folder into an offline HF cache layout."""
    from huggingface_hub import constants

    root = tmp_path / "hf-hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def _add(repo_id: str, folder: Path) -> Path:
        repo = root / f"models--{repo_id.replace('/', '--')}"
        shutil.copytree(folder, repo / "snapshots" / COMMIT)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(COMMIT)
        return repo / "snapshots" / COMMIT

    return _add


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, offline HF cache: any hub id is 'not downloaded'."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "empty-hub"
