"""Deployment: ONNX export (needs the ``export`` extra: onnx, onnxruntime,
onnxscript, imported only when a file is checked)."""
from .onnx import (EXPORTERS, ORDERS, OUTPUTS, OnnxCheck,
                   SegmentorForExport, check_onnx, check_shapes,
                   choose_exporter, export_onnx, trace_shape)

__all__ = [
    'EXPORTERS', 'ORDERS', 'OUTPUTS', 'OnnxCheck', 'SegmentorForExport',
    'check_onnx', 'check_shapes', 'choose_exporter', 'export_onnx',
    'trace_shape'
]
