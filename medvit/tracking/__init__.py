"""The only package that imports mlflow; called from ``medvit.stages`` only.

- ``runs``: stage runs with lineage tags that never sink a stage;
- ``registry``: registered models, versions and their tags, the servable model;
- ``card``: the model card (pure Markdown);
- ``review``: approve/reject with an append-only audit trail (``review.<n>.*`` tags) and segregation of duties;
- ``identity``: who acts (the authenticated MLflow user or ``unauthenticated:<name>``), the MANAGE check,
  and MLflow failures (401, 403, server down) as one-line user errors;
- ``pyfunc``: the served model, logged from code.
"""
