"""Evaluation: every model scored through one code path, plus what register needs from it.

- ``inputs``: read and align the score tables against the manifest;
- ``thresholds``, ``bootstrap``, ``calibration``: operating points, group-bootstrap CIs, ECE;
- ``report``: the evaluation and its renderings (metrics.json, per_label.csv, comparison tables);
- ``plots``, ``figures``, ``attention``: plot data and figures;
- ``provenance``: lineage tags and report notes;
- ``outputs``: the one reader of what evaluate and finetune wrote; ``gate``: the quality gate (pure).

Metric names come from ``medvit.metrics.METRICS``. Nothing here imports mlflow.
"""
