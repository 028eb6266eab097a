"""Fine-tuning: the loop and what it needs around it.

``loop`` (resume, one epoch, the epoch loop; predict/evaluate), ``optimizer`` (timm's AdamW with
layer decay, cosine schedule and EMA), ``checkpoint`` (atomic, pickle-free, resumable), ``data``
(per-epoch seeded datasets, loaders, frozen-feature cache), ``setup`` (model, datasets and loss
from params and the cache), ``loss``, ``mixup``, ``distributed`` (torchrun/DDP) and ``report``
(the stage's output files: weights, scores, history.csv, metrics.json).
"""
