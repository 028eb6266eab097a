"""``medvit predict``: a registered model on the user's own files.

* ``decode.py``: the worker side: one file -> cache-scaled items through the
  model's own ``medvit.data.preprocess.Preprocessor`` (as ingest decodes it), or
  its reject reason; PHI-safe ids, sources and SR references (``medvit.deid``);
* ``run.py``: decoding in worker processes overlapped with the classifier's
  batches; ``predictions.parquet`` / ``.csv``, DICOM SR (``medvit.io.sr``),
  attention-rollout overlays and satellite prediction maps
  (``medvit.io.prediction_map``).

The model comes as local files (``ModelFiles``); resolving a registry URI is
``medvit.tracking.local_model``'s job, called from ``medvit.stages.predict``.
"""

from medvit.predict.run import ModelFiles, Options, Summary, predict

__all__ = ["ModelFiles", "Options", "Summary", "predict"]
