"""The only package that imports mlflow; called from ``medvit.stages`` only.

- ``runs``: stage runs with lineage tags that never sink a stage;
- ``registry``: registered models, versions and their tags, the servable model;
- ``card``: the model card (pure Markdown);
- ``review``: approve/reject with an audit trail, and MLflow errors as user errors;
- ``pyfunc``: the served model, logged from code.
"""
