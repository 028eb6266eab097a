"""The servable model: an MLflow pyfunc logged *from code*, so nothing is pickled.

``registry.log_servable_model`` passes the path of this file as ``python_model``
(MLflow "models from code", https://mlflow.org/docs/latest/ml/model/models-from-code/):
MLflow copies the file into the logged model and executes it at load time, and the
``set_model`` call at the bottom hands it the model object. The weights travel as
artifacts, never as a cloudpickle of the model:

- ``classifier``: a folder with ``model.safetensors`` + ``meta.json`` (the
  ``medvit.models.classifier`` layout; its ``preprocess`` entry holds the plain JSON
  params of ``medvit.data.preprocess.Preprocessor``, the one raw-file-to-input path
  ingest and finetune used);
- ``thresholds``: ``{"label_names": [...], "thresholds": [...], "method": ...}``,
  the per-label operating points chosen on val by evaluate;
- ``onnx`` (optional): the ONNX export; not used by ``predict``.

The medvit package itself is logged as ``code_paths``, so a served version runs
the classifier and preprocessing code it was registered with.

Inputs (``INPUTS`` below, also in the MLmodel ``metadata``), either:

- a float (N, C, H, W) batch scaled like the ingest cache (``{"inputs": [...]}``);
  an image with the wrong channel count, a non-finite value or a side under half
  the model's input size is an error row, not a score;
- a frame with a binary column ``file`` of raw files (DICOM Part 10, PNG/JPEG, or a
  GeoTIFF chip or whole scene, as the model's domain takes) and an optional string
  column ``name`` (a scene's chip ids start with its stem). Over JSON the bytes are
  base64 (``{"dataframe_split": {"columns": ["file"], "data": [["<base64>"]]}}``),
  as MLflow encodes binary columns. A file ingest would reject is an error row
  with ingest's reason; a scene gives one row per chip.

Output: one row per image, DICOM frame or chip: ``input`` (its request row), ``id``
(chip id, ``frame:<k>`` or empty), ``bounds`` (chip bounds in the scene CRS),
``score:<label>`` (sigmoid of the logit), ``label:<label>`` (1 when score >=
threshold; -1 on an error row), ``model``, ``version`` and ``error`` (empty when
scored). MLflow signatures describe one input kind, so the logged signature
declares the outputs and the pyfunc checks both input kinds itself.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

SCORE_PREFIX = "score:"
LABEL_PREFIX = "label:"
FILE_COLUMN = "file"
NAME_COLUMN = "name"
ROW_COLUMNS = ("input", "id", "bounds")
META_COLUMNS = ("model", "version", "error")
NO_LABEL = -1  # label value of an error row
BATCH_SIZE = 32
INPUTS = {
    "tensor": "float32 (N, C, H, W) scaled like the ingest cache, as {'inputs': [...]}",
    "file": "binary column 'file' (base64 in JSON) of raw DICOM, PNG/JPEG or GeoTIFF files; optional string 'name'",
}


def output_columns(label_names: list[str]) -> list[str]:
    """Column order of the prediction frame."""
    return ([*ROW_COLUMNS] + [SCORE_PREFIX + n for n in label_names] + [LABEL_PREFIX + n for n in label_names]
            + [*META_COLUMNS])


class ClassifierModel(PythonModel):
    """Multi-label scores and thresholded labels for cache-scaled images or raw files."""

    # MLflow wraps a PythonModel's predict to validate inputs against its type hints, which would
    # coerce the (N, C, H, W) array to a list; predict checks its two input kinds itself.
    # This class attribute (MLflow's own switch, used by ChatModel) turns that wrapper off.
    _skip_type_hint_validation = True

    def load_context(self, context: PythonModelContext) -> None:
        """Load the safetensors classifier, its preprocessing and the val thresholds; guard the scoring server."""
        from medvit.data.preprocess import Preprocessor
        from medvit.models.classifier import load_classifier
        from medvit.tracking.serving import guard_scoring_server, registered_version

        self.model, self.meta = load_classifier(context.artifacts["classifier"])
        spec = json.loads(Path(context.artifacts["thresholds"]).read_text())
        self.label_names: list[str] = list(self.meta["label_names"])
        if list(spec["label_names"]) != self.label_names:
            raise ValueError(
                f"thresholds are for labels {spec['label_names']}, the classifier predicts {self.label_names}"
            )
        self.thresholds = np.asarray(spec["thresholds"], dtype=np.float64)  # (L,)
        m = self.meta
        if m.get("preprocess"):
            self.prep: Preprocessor | None = Preprocessor.from_json(m["preprocess"])
            self.input_prep = self.prep
        else:  # a model from before preprocess.json: cache-scaled tensors only
            self.prep = None
            self.input_prep = Preprocessor("medical", int(m["img_size"])).with_model(
                int(m["img_size"]), m["mean"], m["std"], m.get("interpolation", "bilinear"))
        self.in_chans, self.img_size = int(m["in_chans"]), int(m["img_size"])
        model_dir = Path(context.artifacts["thresholds"]).resolve().parents[1]
        self.name, self.version = registered_version(model_dir)
        guard_scoring_server()

    # ------------------------------------------------------------------ predict
    def predict(self, context: PythonModelContext, model_input: Any, params: dict[str, Any] | None = None
                ) -> pd.DataFrame:
        """Tensor batch or ``file`` frame -> one row per image/frame/chip (see the module docstring)."""
        if isinstance(model_input, pd.DataFrame):
            if FILE_COLUMN not in model_input.columns:
                # The column names are not echoed: in a CSV body they are its first line, whatever that holds.
                raise _bad_request(f"a frame input needs a binary column '{FILE_COLUMN}' (base64 in JSON); "
                                   f"got {len(model_input.columns)} column(s), none named '{FILE_COLUMN}'")
            return self._predict_files(model_input)
        if isinstance(model_input, dict) and FILE_COLUMN in model_input:
            return self._predict_files(pd.DataFrame(model_input))
        try:
            x = np.asarray(model_input, dtype=np.float32)
        except (TypeError, ValueError):
            raise _bad_request("the tensor input is not a rectangular array of numbers") from None
        return self._predict_tensor(x)

    def _predict_tensor(self, x: np.ndarray) -> pd.DataFrame:
        """Rows for a (N, C, H, W) cache-scaled batch; bad images get an error."""
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4:
            raise _bad_request(f"expected a (N, {self.in_chans}, H, W) batch, got shape {list(x.shape)}")
        rows = []
        for i, img in enumerate(x):
            error = ""
            if img.shape[0] != self.in_chans:
                error = f"wrong channel count: {img.shape[0]}, the model takes {self.in_chans}"
            elif small := self.input_prep.too_small(*img.shape[1:]):
                error = small
            elif not np.isfinite(img).all():
                error = "non-finite values: the input holds NaN or inf"
            rows.append(_Row(i, "", "", None if error else img, error))
        return self._score(rows)

    def _predict_files(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows for raw files: decoded with the model's preprocessor; a bad file is an error row."""
        rows = []
        names = frame[NAME_COLUMN].tolist() if NAME_COLUMN in frame.columns else [""] * len(frame)
        for i, (cell, name) in enumerate(zip(frame[FILE_COLUMN].tolist(), names)):
            data = _file_bytes(cell)
            if isinstance(data, str):
                rows.append(_Row(i, "", "", None, data))
                continue
            if self.prep is None:
                rows.append(_Row(i, "", "", None, "this model version takes cache-scaled tensors only: it was "
                                                  "trained before ingest saved preprocess.json"))
                continue
            items = self.prep.decode(data, str(name) if isinstance(name, str) else "")
            if isinstance(items, str):
                rows.append(_Row(i, "", "", None, items))
                continue
            rows += [_Row(i, it.id, it.bounds, it.image, it.error) for it in items]
        return self._score(rows)

    def _score(self, rows: list[_Row]) -> pd.DataFrame:
        """Run the classifier on the rows with an image, in batches; fill the output frame."""
        import torch

        n_labels = len(self.label_names)
        scores = np.full((len(rows), n_labels), np.nan)  # (N, L)
        good = [k for k, r in enumerate(rows) if r.image is not None]
        with torch.no_grad():
            for start in range(0, len(good), BATCH_SIZE):
                idx = good[start:start + BATCH_SIZE]
                batch = self.input_prep.to_model_input(np.stack([rows[k].image for k in idx]))
                scores[idx] = torch.sigmoid(self.model(batch)).double().numpy()  # (B, L)
        calls = np.where(np.isnan(scores), NO_LABEL, (scores >= self.thresholds).astype(np.int64))
        out = pd.DataFrame({"input": [r.input for r in rows], "id": [r.id for r in rows],
                            "bounds": [r.bounds for r in rows]})
        for j, n in enumerate(self.label_names):
            out[SCORE_PREFIX + n] = scores[:, j]
        for j, n in enumerate(self.label_names):
            out[LABEL_PREFIX + n] = calls[:, j].astype(np.int64)
        out["model"], out["version"] = self.name, self.version
        out["error"] = [r.error for r in rows]
        return out[output_columns(self.label_names)].astype({"input": np.int64})


class _Row:
    """One output row before scoring."""

    __slots__ = ("input", "id", "bounds", "image", "error")

    def __init__(self, input: int, id: str, bounds: str, image: np.ndarray | None, error: str) -> None:  # noqa: A002
        self.input, self.id, self.bounds, self.image, self.error = input, id, bounds, image, error


def _file_bytes(cell: Any) -> bytes | str:
    """A ``file`` cell as bytes (base64 text decoded), or the reason it is unusable."""
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return bytes(cell) if len(cell) else "empty file"
    if isinstance(cell, str):
        if not cell:
            return "empty file"
        try:
            return base64.b64decode("".join(cell.split()), validate=True)  # `base64 FILE` wraps lines at 76
        except (binascii.Error, ValueError):
            return "not base64: a 'file' cell in JSON must be the file's bytes in base64"
    return "empty file" if cell is None or (isinstance(cell, float) and np.isnan(cell)) else \
        f"not a file: a 'file' cell must be bytes (base64 in JSON), got {type(cell).__name__}"


def _bad_request(message: str) -> Exception:
    """A 400 for the scoring server, with a one-line message."""
    from mlflow.exceptions import MlflowException

    return MlflowException.invalid_parameter_value(message)


# MLflow runs this file under a generated module name when it loads the logged model;
# a plain `import medvit.tracking.pyfunc` must not register a global model object.
if __name__ != "medvit.tracking.pyfunc":
    mlflow.models.set_model(ClassifierModel())
