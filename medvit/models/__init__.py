"""The model: ``backbone`` (timm ViT creation, weights, the frozen prefix), ``head`` (multi-label
head), ``classifier`` (backbone + head, timm's optimizer interface, save/load) and ``export`` (ONNX).
"""
