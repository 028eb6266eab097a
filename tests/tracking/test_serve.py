"""Serve round trip: `mlflow models serve -m models:/medvit-medical@candidate` answers /invocations."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from medvit.data.transforms import eval_transform
from medvit.models.classifier import load_classifier



@pytest.mark.slow
def test_served_candidate_returns_scores_and_thresholded_labels(
    tmp_path: Path, tracking: str, make_model: Callable[..., dict], make_report: Callable[..., Path],
    register: Callable[..., int], model_server: Callable[[str], str],
) -> None:
    meta = make_model()
    make_report(thresholds=[0.2, 0.5, 0.8])
    assert register() == 0
    url = model_server("models:/medvit-medical@candidate")

    # A synthetic batch at the cache's resolution (48 px; the model runs at 32) and value range.
    images = np.random.default_rng(1).random((3, 1, 48, 48), dtype=np.float32)
    body = json.dumps({"inputs": images.tolist()}).encode()
    req = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200
        predictions = json.loads(r.read())["predictions"]
    assert len(predictions) == 3

    # Expected: the finetune classifier on the evaluation preprocessing, sigmoid, score >= val threshold.
    model, _ = load_classifier(tmp_path / "models")
    t = eval_transform(meta["img_size"], meta["mean"], meta["std"])
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(np.stack([t(x) for x in images])))).numpy()
    thresholds = np.array([0.2, 0.5, 0.8])
    for row, exp in zip(predictions, expected):
        scores = np.array([row[f"score:{n}"] for n in meta["label_names"]])
        labels = np.array([row[f"label:{n}"] for n in meta["label_names"]])
        np.testing.assert_allclose(scores, exp, atol=1e-5)
        np.testing.assert_array_equal(labels, (exp >= thresholds).astype(int))

    # A batch of the wrong channel count is refused by the signature, not silently scored.
    bad = json.dumps({"inputs": np.zeros((1, 3, 32, 32), np.float32).tolist()}).encode()
    req = urllib.request.Request(f"{url}/invocations", data=bad, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert err.value.code == 400
