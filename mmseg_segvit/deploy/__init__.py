"""Deployment: ONNX export (needs the ``export`` extra: onnx, onnxruntime,
onnxscript, imported only when a file is checked)."""
from .onnx import (ORDERS, OUTPUTS, OnnxCheck, SegmentorForExport,
                   check_onnx, check_shapes, export_onnx, trace_shape)

__all__ = [
    'ORDERS', 'OUTPUTS', 'OnnxCheck', 'SegmentorForExport', 'check_onnx',
    'check_shapes', 'export_onnx', 'trace_shape'
]
