"""Check what a dataset's label maps hold, on a sample, when it is built.

A label map that decodes and has the right size can still not be what the
config says, and training then runs on and validation prints a number the
data cannot support:

- binary masks saved as 0/255 (255 is MMSeg's ``ignore_index``): the
  object class is never seen, validation reports the background alone;
- colour label maps (3 or 4 channels, as annotation tools export them):
  ``LoadAnnotations`` keeps the channel axis and the label no longer fits
  its image;
- label maps one pixel high or wide: ``LoadAnnotations`` squeezes them
  to one dimension;
- 16-bit label maps with values above 255: ``LoadAnnotations`` casts to
  ``uint8``, so class 256 becomes class 0;
- values outside ``0 .. num_classes - 1`` other than the ignore index
  (labels counted from 1 with ``reduce_zero_label=False``, a class list
  shorter than the labels);
- a listed class that no label map holds (with ``reduce_zero_label=True``
  label 0 is ignored and label ``v`` is class ``v - 1``, so labels counted
  from 0 lose their first class and never reach the last).

:func:`check_label_values` decodes a sample of the label maps as
``LoadAnnotations`` does (``reduce_zero_label``, then the ``label_map`` of
a class subset), raises :class:`LabelValuesError` naming the file and the
cause for the first four, and warns (:class:`LabelValuesWarning`) about
listed classes that occur in no label map when the sample is the whole
dataset. ``CheckedSegDataset`` and the demo dataset run it when built;
``DatasetCheckHook`` runs it on the datasets of a run that did not.
"""
import os.path as osp
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set

import mmcv
import numpy as np
from mmengine import fileio

__all__ = [
    'LabelValuesError', 'LabelValuesWarning', 'LabelValues',
    'check_label_values', 'read_label_values'
]

#: How many label maps are decoded (evenly spread over the dataset).
SAMPLE_SIZE = 32


class LabelValuesError(ValueError):
    """A dataset's label maps cannot be what its settings say."""


class LabelValuesWarning(UserWarning):
    """A listed class occurs in none of a dataset's label maps."""


@dataclass
class LabelValues:
    """What a sample of label maps holds.

    Attributes:
        files (int): Label maps decoded.
        total (int): Samples in the dataset.
        raw (set): Values in the files, as stored.
        values (set): Values after ``reduce_zero_label`` and ``label_map``,
            as the model sees them.
        where (dict): For each value in ``values``, a file that holds it.
    """
    files: int = 0
    total: int = 0
    raw: Set[int] = field(default_factory=set)
    values: Set[int] = field(default_factory=set)
    where: Dict[int, str] = field(default_factory=dict)


def _decode(path: str, backend: str) -> np.ndarray:
    """A label map as stored (before ``LoadAnnotations``' squeeze and ``uint8``
    cast)."""
    return mmcv.imfrombytes(
        fileio.get(path), flag='unchanged', backend=backend)


def _as_loaded(raw: np.ndarray, reduce_zero_label: bool,
               label_map: Optional[Dict[int, int]]) -> np.ndarray:
    """``raw`` as MMSeg's ``LoadAnnotations`` gives it to the model."""
    label = raw.squeeze().astype(np.uint8)
    if reduce_zero_label:
        label[label == 0] = 255
        label = label - 1
        label[label == 254] = 255
    if label_map:
        copy = label.copy()
        for old, new in label_map.items():
            label[copy == old] = new
    return label


def _decode_backend(dataset) -> str:
    for step in getattr(getattr(dataset, 'pipeline', None), 'transforms', ()):
        if type(step).__name__ == 'LoadAnnotations':
            return getattr(step, 'imdecode_backend', 'pillow')
    return 'pillow'


def _sample(paths: Sequence[str], size: int) -> List[str]:
    if len(paths) <= size:
        return list(paths)
    picks = np.linspace(0, len(paths) - 1, size).round().astype(int)
    return [paths[i] for i in sorted(set(picks.tolist()))]


def read_label_values(dataset,
                      data_list: Optional[Sequence[dict]] = None,
                      sample_size: int = SAMPLE_SIZE) -> LabelValues:
    """Decode a sample of a dataset's label maps (local files only).

    Raises:
        LabelValuesError: A colour (multi-channel) label map, one with a
            side of one pixel, or one with values above 255 (see module).
    """
    if data_list is None:
        data_list = [dataset.get_data_info(i) for i in range(len(dataset))]
    paths = [
        info['seg_map_path'] for info in data_list
        if info.get('seg_map_path') and '://' not in str(info['seg_map_path'])
    ]
    report = LabelValues(total=len(paths))
    name = type(dataset).__name__
    backend = _decode_backend(dataset)
    reduce_zero_label = bool(getattr(dataset, 'reduce_zero_label', False))
    label_map = getattr(dataset, 'label_map', None)
    for path in _sample(paths, sample_size):
        if not osp.isfile(path):
            continue  # check_data_files names missing files
        try:
            raw = _decode(path, backend)
        except Exception:
            continue  # NamedFileErrorsMixin names files that do not decode
        if raw is None:
            continue
        if raw.ndim == 3 and raw.shape[-1] > 1:
            same = all((raw[..., c] == raw[..., 0]).all()
                       for c in range(1, min(raw.shape[-1], 3)))
            hint = ('its channels are equal: save one of them as a '
                    'single-channel (grayscale) PNG' if same else
                    'it is coloured by class: turn each colour into its '
                    'class index (a single-channel or palette PNG)')
            raise LabelValuesError(
                f'{name}: the label map {path} has {raw.shape[-1]} '
                f'channels ({raw.shape[0]}x{raw.shape[1]}x{raw.shape[-1]}, '
                'a colour image); a label map holds one class index per '
                f'pixel: {hint}')
        if raw.ndim >= 2 and min(raw.shape[:2]) == 1:
            raise LabelValuesError(
                f'{name}: the label map {path} is {raw.shape[0]}x'
                f'{raw.shape[1]}: MMSeg\'s LoadAnnotations squeezes a label '
                'map with a one-pixel side to one dimension, which no '
                'segmentor can use: leave the sample out, or pad its image '
                'and label map to at least 2 pixels (label 255 = ignore)')
        if raw.dtype != np.uint8 and raw.size and raw.max() > 255:
            raise LabelValuesError(
                f'{name}: the label map {path} is {raw.dtype} with values '
                f'up to {int(raw.max())}; MMSeg reads label maps as 8 bits '
                '(LoadAnnotations casts to uint8, so 256 would become 0): '
                'store class indices 0..254 (255 = ignore) in an 8-bit PNG')
        report.files += 1
        report.raw.update(np.unique(raw).tolist())
        for value in np.unique(_as_loaded(raw, reduce_zero_label,
                                          label_map)).tolist():
            report.values.add(value)
            report.where.setdefault(value, path)
    return report


def _names(classes: Sequence[str],
           indices: Sequence[int],
           limit: int = 6) -> str:
    shown = [f'{i} ({classes[i]!r})' for i in indices[:limit]]
    more = len(indices) - limit
    return ', '.join(shown) + (f' and {more} more' if more > 0 else '')


def check_label_values(dataset,
                       data_list: Optional[Sequence[dict]] = None,
                       num_classes: Optional[int] = None,
                       sample_size: int = SAMPLE_SIZE) -> LabelValues:
    """Check that a dataset's label maps hold what its settings say.

    Args:
        dataset (BaseSegDataset): The dataset (built, or inside its
            ``load_data_list``); its ``metainfo['classes']``,
            ``reduce_zero_label``, ``label_map`` and ``ignore_index``
            are used.
        data_list (Sequence[dict], optional): Its samples. Default: those
            of the built dataset.
        num_classes (int, optional): Classes of the model. Default: the
            number of classes in the dataset's metainfo.
        sample_size (int): Label maps to decode, spread over the dataset.

    Returns:
        LabelValues: What the sample held.

    Raises:
        LabelValuesError: Naming the file and the cause: colour or 16-bit
            label maps, labels that hold only 0 and the ignore index 255
            (binary masks saved as 0/255), values outside ``0 ..
            num_classes - 1`` other than the ignore index, or no class at
            all.

    Warns:
        LabelValuesWarning: Listed classes that occur in no label map,
            when the sample is the whole dataset.
    """
    report = read_label_values(dataset, data_list, sample_size)
    if not report.files:
        return report
    name = type(dataset).__name__
    classes = list(dataset.metainfo.get('classes') or ())
    if num_classes is None:
        num_classes = len(classes)
    if not num_classes:
        return report
    ignore = int(getattr(dataset, 'ignore_index', 255))
    reduce_zero_label = bool(getattr(dataset, 'reduce_zero_label', False))
    scope = (f'the {report.files} label maps checked' if
             report.files < report.total else f'all {report.files} label maps')
    if report.raw <= {0, 255} and 255 in report.raw and num_classes > 1:
        example = report.where.get(ignore, next(iter(report.where.values())))
        raise LabelValuesError(
            f'{name}: {scope} hold only the values 0 and 255 (e.g. '
            f'{example}): binary masks saved as 0/255. 255 is the ignore '
            f'index, so the object would never be learnt or scored. Map 255 '
            f'to 1 in the label files (e.g. `(mask > 127).astype(np.uint8)`'
            f'), or give the object the value of its class in the '
            f'{num_classes} listed classes')
    outside = sorted(v for v in report.values
                     if v != ignore and not 0 <= v < num_classes)
    if outside:
        hint = ''
        if not reduce_zero_label and 0 not in report.raw \
                and max(outside) == num_classes:
            hint = (' The labels start at 1: set reduce_zero_label=True '
                    'if 0 means "unlabelled" (label v is then class v-1)')
        elif not reduce_zero_label and max(outside) == num_classes:
            hint = (' If the labels count from 1 with 0 for "unlabelled", '
                    'set reduce_zero_label=True')
        raise LabelValuesError(
            f'{name}: label values {outside[:8]} (e.g. in '
            f'{report.where[outside[0]]}) are not classes: the model has '
            f'{num_classes} classes (0..{num_classes - 1}) and '
            f'{ignore} is ignored (reduce_zero_label={reduce_zero_label}). '
            'Set num_classes and the dataset\'s metainfo classes to cover '
            f'the labels, or map the values in the files.{hint}')
    present = [v for v in report.values if 0 <= v < num_classes]
    if not present:
        raise LabelValuesError(
            f'{name}: {scope} hold no class, only the ignore index {ignore}'
            f' (values as stored: {sorted(report.raw)[:8]}, '
            f'reduce_zero_label={reduce_zero_label})')
    if report.files == report.total and len(classes) == num_classes:
        absent = [i for i in range(num_classes) if i not in report.values]
        if absent:
            hint = ''
            if reduce_zero_label and 0 in report.raw \
                    and num_classes - 1 in absent \
                    and max(report.raw - {255}) == num_classes - 1:
                hint = (' With reduce_zero_label=True label 0 is ignored and'
                        ' label v is class v-1: if the labels count from 0,'
                        ' set reduce_zero_label=False')
            warnings.warn(
                f'{name}: {len(absent)} of the {num_classes} listed classes '
                f'occur in none of the {report.files} label maps: '
                f'{_names(classes, absent)}; their IoU cannot be measured.'
                f'{hint}',
                LabelValuesWarning,
                stacklevel=2)
    return report
