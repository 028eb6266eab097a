"""The weights-provenance vocabulary every layer shares.

A stage records where its initial weights came from (a hub id, a local file, or
``random-init``) in meta.json, MLflow tags and the model card. ``RANDOM_INIT``
is the one spelling of "no pretrained weights"; ``is_random_init`` also accepts
the params spellings of "no weights" (``none``, ``null``, empty).
"""

from __future__ import annotations

RANDOM_INIT = "random-init"
NO_WEIGHTS = ("", "none", "null", RANDOM_INIT)


def is_random_init(weights: str) -> bool:
    """Whether a weights reference or provenance string means no pretrained weights."""
    return weights.strip().lower() in NO_WEIGHTS
