"""Datasets."""
from .data_files import (CheckedSegDataset, DataFilesCheckMixin,
                         DataFilesError, check_data_files)
from .file_errors import NamedFileErrorsMixin, SampleLoadError
from .label_values import (LabelValuesError, LabelValuesWarning,
                           check_label_values)
from .shapes import SegVitShapesDataset
from .shapes_generator import generate_shapes_dataset
from .transforms import ClampedResize

__all__ = [
    'NamedFileErrorsMixin', 'SampleLoadError', 'SegVitShapesDataset',
    'generate_shapes_dataset', 'CheckedSegDataset', 'DataFilesCheckMixin',
    'DataFilesError', 'check_data_files', 'LabelValuesError',
    'LabelValuesWarning', 'check_label_values', 'ClampedResize'
]
