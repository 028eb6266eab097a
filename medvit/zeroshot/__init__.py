"""CLIP baselines for the zeroshot stage.

prompts (templates as data, prompts.yaml) -> backends (the common interface, transformers loaders;
open_clip loaders in open_clip_backend)
-> preprocess (cache channels -> RGB -> the model's own resize/normalise) -> embed
(image embeddings, cached on disk) -> scoring (zero-shot) and probe (linear probe);
baselines ties them together for medvit/stages/zeroshot.py.
"""
