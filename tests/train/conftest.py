"""Tiny fine-tune params shared by the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from medvit.config import FinetuneConfig

TINY_FINETUNE: dict[str, Any] = {
    "model": "deit3_small_patch16_384",
    "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2},
    "weights": "none", "allow_random_init": True, "img_size": 32, "freeze_blocks": 1,
    "head": {"hidden_dim": 32, "dropout": 0.1}, "epochs": 3, "batch_size": 8, "lr": 0.003,
    "warmup_epochs": 0.5, "early_stopping_patience": 5, "deterministic": True,
}


def tiny_finetune(**overrides: Any) -> dict[str, Any]:
    """The tiny finetune section with ``overrides``."""
    return {**TINY_FINETUNE, **overrides}


@pytest.fixture
def tiny_params(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write a params.yaml with the tiny finetune section (+ overrides) and return its path."""

    def _write(**overrides: Any) -> Path:
        path = tmp_path / "params.yaml"
        # dvc.yaml declares finetune.domains.<domain>, so (as for `dvc repro`) params.yaml must hold the key.
        section = {"domains": {"medical": {}, "satellite": {}}, **tiny_finetune(**overrides)}
        path.write_text(yaml.safe_dump({"finetune": section}))
        return path

    return _write


@pytest.fixture
def tiny_cfg() -> Callable[..., FinetuneConfig]:
    """Factory: a validated tiny ``FinetuneConfig``."""
    return lambda **overrides: FinetuneConfig.model_validate(tiny_finetune(**overrides))
