"""ONNX export of the classifier: opset, dynamic batch, parity with PyTorch under onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from medvit.models.classifier import build_classifier
from medvit.models.export import INPUT_NAME, OUTPUT_NAME, export_onnx, onnx_max_abs_diff, onnx_opset

META = {
    "model": "deit3_small_patch16_384", "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2},
    "img_size": 32, "in_chans": 4, "label_names": ["water", "forest", "urban"],
    "head": {"hidden_dim": 16, "dropout": 0.1}, "mean": [0.1] * 4, "std": [0.05] * 4, "weights": "random-init",
    "freeze_blocks": 1,
}


def test_onnx_export_matches_pytorch_for_any_batch_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_classifier(META).eval()
    path = export_onnx(model, META, tmp_path / "model.onnx", opset=17)
    assert onnx_opset(path) == 17
    onnx.checker.check_model(onnx.load(str(path)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [inp] = sess.get_inputs()
    assert inp.name == INPUT_NAME and inp.shape[1:] == [4, 32, 32] and not isinstance(inp.shape[0], int)
    for n in (1, 5):  # neither is the export example's batch of 2
        x = torch.randn(n, 4, 32, 32, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            ref = model(x).numpy()
        out = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        assert out.shape == (n, 3)
        assert np.abs(out - ref).max() <= 1e-4
    assert onnx_max_abs_diff(model, path, torch.randn(3, 4, 32, 32)) <= 1e-4


def test_opset_below_17_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=">= 17"):
        export_onnx(build_classifier(META), META, tmp_path / "m.onnx", opset=16)
