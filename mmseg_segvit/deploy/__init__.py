"""Deployment: ONNX export (needs the ``export`` extra: onnx, onnxruntime,
onnxscript, imported only when a file is checked) and the steps a caller
does around the exported graph (the config's test pipeline, mmseg's
post-processing)."""
from .onnx import (EXPORTERS, ORDERS, OUTPUTS, OnnxCheck, SegmentorForExport,
                   check_exportable, check_onnx, check_shapes, choose_exporter,
                   export_onnx, no_mha_fastpath, pad_to_patches, trace_shape)
from .pipeline import predict_labels, prepare_inputs

__all__ = [
    'EXPORTERS', 'ORDERS', 'OUTPUTS', 'OnnxCheck', 'SegmentorForExport',
    'check_exportable', 'check_onnx', 'check_shapes', 'choose_exporter',
    'export_onnx', 'no_mha_fastpath', 'pad_to_patches', 'predict_labels',
    'prepare_inputs', 'trace_shape'
]
