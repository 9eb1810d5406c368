"""Inference API: ``init_model`` and an inferencer for every checkpoint layout,
outputs named after their inputs."""
from .inference import head_num_classes, init_model, load_segmentor_weights
from .inferencer import SegViTInferencer

__all__ = [
    'init_model', 'load_segmentor_weights', 'head_num_classes',
    'SegViTInferencer'
]
