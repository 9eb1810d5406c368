"""Datasets."""
from .shapes import SegVitShapesDataset
from .shapes_generator import generate_shapes_dataset

__all__ = ['SegVitShapesDataset', 'generate_shapes_dataset']
