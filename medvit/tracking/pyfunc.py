"""The servable model: an MLflow pyfunc logged *from code*, so nothing is pickled.

``registry.log_servable_model`` passes the path of this file as ``python_model``
(MLflow "models from code", https://mlflow.org/docs/latest/ml/model/models-from-code/):
MLflow copies the file into the logged model and executes it at load time, and the
``set_model`` call at the bottom hands it the model object. The weights travel as
artifacts, never as a cloudpickle of the model:

- ``classifier``: a folder with ``model.safetensors`` + ``meta.json`` (the
  ``medvit.models.classifier`` layout: timm name, img_size, in_chans, label names,
  normalisation mean/std, weights provenance);
- ``thresholds``: ``{"label_names": [...], "thresholds": [...], "method": ...}``,
  the per-label operating points chosen on val by evaluate;
- ``onnx`` (optional): the ONNX export; not used by ``predict``.

The medvit package itself is logged as ``code_paths``, so a served version runs
the classifier and preprocessing code it was registered with.

Input: a float32 (N, C, H, W) batch scaled like the ingest cache (the values the
cache shards hold). Preprocessing is the evaluation transform of
``medvit.data.transforms`` (antialiased resize to img_size with the interpolation in meta.json, then
(x - mean) / std). Output: a DataFrame with one row per image, ``score:<label>``
(sigmoid of the logit) and ``label:<label>`` (1 when score >= threshold).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

SCORE_PREFIX = "score:"
LABEL_PREFIX = "label:"
BATCH_SIZE = 32


def output_columns(label_names: list[str]) -> list[str]:
    """Column order of the prediction frame: all scores, then all thresholded labels."""
    return [SCORE_PREFIX + n for n in label_names] + [LABEL_PREFIX + n for n in label_names]


class ClassifierModel(PythonModel):
    """Multi-label scores and thresholded labels for a batch of cache-scaled images."""

    # MLflow wraps a PythonModel's predict to validate inputs against its type hints, which would
    # coerce the (N, C, H, W) array to a list; the logged TensorSpec signature validates instead.
    # This class attribute (MLflow's own switch, used by ChatModel) turns that wrapper off.
    _skip_type_hint_validation = True

    def load_context(self, context: PythonModelContext) -> None:
        """Load the safetensors classifier, its preprocessing and the val thresholds."""
        from medvit.data.transforms import eval_transform
        from medvit.models.classifier import load_classifier

        self.model, self.meta = load_classifier(context.artifacts["classifier"])
        self.transform = eval_transform(int(self.meta["img_size"]), self.meta["mean"], self.meta["std"],
                                       self.meta.get("interpolation", "bilinear"))
        spec = json.loads(Path(context.artifacts["thresholds"]).read_text())
        self.label_names: list[str] = list(self.meta["label_names"])
        if list(spec["label_names"]) != self.label_names:
            raise ValueError(
                f"thresholds are for labels {spec['label_names']}, the classifier predicts {self.label_names}"
            )
        self.thresholds = np.asarray(spec["thresholds"], dtype=np.float64)  # (L,)

    def predict(
        self, context: PythonModelContext, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """(N, C, H, W) cache-scaled float32 images -> (N, 2L) frame of scores and 0/1 labels."""
        import torch

        x = np.asarray(model_input, dtype=np.float32)
        in_chans = int(self.meta["in_chans"])
        if x.ndim != 4 or x.shape[1] != in_chans:
            raise ValueError(f"expected a (N, {in_chans}, H, W) float32 batch, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("input contains NaN or inf; the cache holds finite values only")
        scores = []
        with torch.no_grad():
            for start in range(0, len(x), BATCH_SIZE):
                batch = np.stack([self.transform(img) for img in x[start : start + BATCH_SIZE]])
                logits = self.model(torch.from_numpy(batch))  # (B, L)
                scores.append(torch.sigmoid(logits).double().numpy())
        s = np.concatenate(scores) if scores else np.zeros((0, len(self.label_names)))  # (N, L)
        calls = (s >= self.thresholds).astype(np.int64)  # positive when score >= threshold, as in evaluate
        return pd.DataFrame(np.concatenate([s, calls], axis=1), columns=output_columns(self.label_names)).astype(
            {LABEL_PREFIX + n: np.int64 for n in self.label_names}
        )


# MLflow runs this file under a generated module name when it loads the logged model;
# a plain `import medvit.tracking.pyfunc` must not register a global model object.
if __name__ != "medvit.tracking.pyfunc":
    mlflow.models.set_model(ClassifierModel())
