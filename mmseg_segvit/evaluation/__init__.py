"""Evaluation metrics."""
from .iou_metric import CheckedIoUMetric, absent_class_note

__all__ = ['CheckedIoUMetric', 'absent_class_note']
