"""ONNX export of the fine-tuned classifier, with a parity check against PyTorch.

The graph maps (N, C, img_size, img_size) *normalised* images to (N, L) logits,
exactly like ``Classifier.forward``; resizing, normalisation (meta.json mean/std)
and the sigmoid stay outside, as for the PyTorch model. The batch axis is
dynamic. We use the torch.export-based exporter (``dynamo=True``, the default
path since torch 2.9, needs onnxscript); it emits opset 18 natively and
down-converts when a lower opset is asked for.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
MIN_OPSET = 17


def export_onnx(model: nn.Module, meta: Mapping[str, Any], path: str | Path, opset: int = MIN_OPSET) -> Path:
    """Write ``model`` as a single-file ONNX graph with a dynamic batch axis.

    Args:
        model: the classifier ((N, C, H, W) normalised images -> (N, L) logits).
        meta: its meta.json mapping (``in_chans``, ``img_size``).
        path: the .onnx file to write.
        opset: ONNX opset, at least 17 (LayerNormalization is a single op from 17 on).

    Returns:
        The written path.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"onnx opset must be >= {MIN_OPSET}, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    size = int(meta["img_size"])
    # Batch 2 as the example, so tracing does not specialise the batch dimension to 1.
    example = torch.zeros(2, int(meta["in_chans"]), size, size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with torch.no_grad(), _quiet_exporter():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        )
    written = onnx_opset(path)
    if written != opset:
        # The exporter keeps its native opset when down-conversion fails; say so rather than mislabel it.
        log.warning("ONNX export asked for opset %d but wrote opset %d", opset, written)
    log.info("exported ONNX (opset %d, dynamic batch) to %s", written, path)
    return path


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hold the exporter's per-pass INFO logs (one line per graph rewrite) at WARNING."""
    loggers = [logging.getLogger(n) for n in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def onnx_opset(path: str | Path) -> int:
    """The default-domain opset version of an ONNX file."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next(int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def onnx_max_abs_diff(model: nn.Module, path: str | Path, images: torch.Tensor) -> float:
    """Max |logits_onnxruntime - logits_torch| on ``images`` ((N, C, H, W) normalised)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model.eval()(images).numpy()  # (N, L)
    out = sess.run([OUTPUT_NAME], {INPUT_NAME: images.numpy().astype(np.float32)})[0]
    return float(np.abs(out - ref).max())
