"""Evaluation: every model scored through one code path, plus what register needs from it.

- ``inputs``: read and align the score tables against the manifest;
- ``thresholds``, ``bootstrap``, ``calibration``: operating points, group-bootstrap CIs, ECE;
- ``report``: the evaluation and its renderings (metrics.json, per_label.csv, comparison tables);
- ``subgroups``: per-subgroup metrics, paired differences from the rest of test, flags;
- ``failures``: top-k false positives / negatives per label at the val-chosen threshold;
- ``describe``: demographics and label prevalence per split;
- ``intervals``: whether a CI rests on enough groups; ``analysis``: writes the files below for the stage;
- ``plots``, ``figures``, ``attention``: plot data and figures;
- ``provenance``: lineage tags and report notes;
- ``outputs``: the one reader of what evaluate and finetune wrote; ``gate``: the quality gate (pure);
- ``review`` (template in ``review_template``): the self-contained HTML review report of a registered
  version, built by the register stage from the files below.

Files in ``reports/<d>/`` (stable names; the review report reads them):

- ``metrics.json``: also ``test/subgroups``, ``test/subgroups_flagged`` and
  ``test/subgroups_without_interval`` (the fine-tuned model's rows of subgroups.csv), ``test/n_groups``,
  ``min_groups`` and ``test/ci_reliable`` (1, or 0 when the test CIs come from fewer than
  ``evaluate.min_groups`` groups: unreliable, see ``intervals.json``);
- ``intervals.json``: ``{"n_groups": G, "min_groups": m, "reliable": bool, "note": str}``: the one
  sentence every rendering uses for an unreliable interval;
- ``subgroups.csv``: one row per (model, attribute, value), columns ``model, attribute, value, subgroup,
  n, groups, prevalence, n_labels``, then ``auroc, ap, sensitivity, specificity`` (macro over the
  ``n_labels`` labels with both classes in the subgroup and in the rest; sensitivity/specificity at the
  val-chosen thresholds) each with ``_ci_low/_ci_high``, ``auroc_rest``, ``auroc_diff`` (subgroup minus
  the rest of test) with ``_ci_low/_ci_high``,
  ``interval`` (``ok`` or ``too few groups for an interval (G groups)``), ``flagged`` (0/1) and
  ``flag_reason``; CIs are empty when ``interval`` is not ``ok``. A DVC plot (the forest plot data);
- ``figures/subgroups_forest.png``: the forest plot (AUROC per subgroup with CIs, per model);
- ``failures/failures.csv``: ``label, kind (false_positive|false_negative), rank, id, group, score,
  threshold, image`` (``image``: the overlay PNG relative to ``failures/``, empty when none was drawn);
  overlays ``failures/<label>_<fp|fn>_<rank>.png`` (attention rollout on the test image; the label with
  characters other than ``A-Za-z0-9_.-`` replaced by ``_``);
- ``demographics.csv``: ``split, attribute, value, count, fraction`` (fractions of the split's images;
  counts of one attribute sum to the split size); ``label_prevalence.csv``: ``split, label, n, n_known,
  positives, prevalence``; ``data_description.json``: both, as ``{"demographics": [...], "prevalence": [...]}``.

Metric names come from ``medvit.metrics.METRICS``. Nothing here imports mlflow.
"""
