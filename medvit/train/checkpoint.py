"""Atomic, pickle-free resumable checkpoints (``torch.load(weights_only=True)``).

A checkpoint holds only tensors and primitive containers: model, optimizer,
scheduler and EMA state dicts, RNG states (torch, numpy, python), epoch, step,
params, label names, normalisation stats, the params/data hashes it belongs to,
and the best-so-far bookkeeping. It is written to a temporary file in the same
folder, fsynced and renamed over ``last.pt`` (POSIX rename is atomic), so a kill
at any moment leaves either the previous or the new checkpoint.
Ours, not timm's ``CheckpointSaver``: that one pickles the run's args, keeps no RNG or scheduler
state and is not fsynced, so it can give neither ``weights_only`` loading nor a bitwise resume.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medvit.io.atomic import atomic_open

LAST = "last.pt"
BEST = "best.safetensors"


def rng_state() -> dict[str, Any]:
    """Torch, numpy and python RNG states as tensors/tuples (weights_only-safe)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (temporary file + fsync + os.replace)."""
    with atomic_open(path, "wb", fsync=True) as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any] | None:
    """Load a checkpoint with ``weights_only=True``; None if absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt checkpoint means start fresh, loudly
        import warnings

        warnings.warn(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); starting fresh", stacklevel=2)
        return None
