"""Check a segmentation dataset's folders when it is built.

``BaseSegDataset`` lists the images under ``data_prefix.img_path`` that
end with ``img_suffix`` and expects a label named like each image with
``seg_map_suffix``. Images with another suffix (PNG images where the config
says ``.jpg``) give an empty dataset, which mmengine reports as ``ValueError:
need at least one array to concatenate``; labels with another suffix fail
only when the first sample is loaded. :func:`check_data_files` says what is
wrong and which setting to change instead, when the dataset is built (for
training: before the first iteration).

Use it through :class:`DataFilesCheckMixin` (``class MyDataset(
DataFilesCheckMixin, ADE20KDataset)``), through ``CheckedSegDataset`` (a
``BaseSegDataset`` with the check, for folder datasets such as the
fine-tuning config's), or call it on a built dataset. Only local folders
are checked; other storage backends are left to mmengine.
"""
import os
import os.path as osp
from collections import Counter
from typing import Iterable, List, Optional, Sequence

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .file_errors import NamedFileErrorsMixin
from .label_values import check_label_values

__all__ = [
    'DataFilesError', 'check_data_files', 'DataFilesCheckMixin',
    'CheckedSegDataset'
]


class DataFilesError(FileNotFoundError):
    """A dataset's folders do not hold the files its settings describe."""


def _suffix_counts(folder: str, limit: int = 3) -> str:
    """'4 .png files, 1 .txt file' for the files under ``folder``."""
    counts: Counter = Counter()
    for _, _, files in os.walk(folder):
        for name in files:
            suffix = osp.splitext(name)[1].lower() or '(no suffix)'
            counts[suffix] += 1
    if not counts:
        return 'no files at all'
    parts = [
        f'{n} {s} file{"s" if n > 1 else ""}'
        for s, n in counts.most_common(limit)
    ]
    if len(counts) > limit:
        parts.append('...')
    return ', '.join(parts)


def _local_dir(path: Optional[str]) -> bool:
    return bool(path) and '://' not in str(path)


def check_data_files(dataset: BaseSegDataset,
                     data_list: Optional[Sequence[dict]] = None) -> None:
    """Check that a dataset found its images and their labels.

    Args:
        dataset (BaseSegDataset): The dataset (built, or inside its
            ``load_data_list``).
        data_list (Sequence[dict], optional): The samples it found.
            Default: those of the built dataset.

    Raises:
        DataFilesError: A missing folder, no image with ``img_suffix``
            (saying which suffixes the folder holds: set ``img_suffix``),
            or images without a label file with ``seg_map_suffix`` (set
            ``seg_map_suffix``). The message names the folder and the
            dataset class.
    """
    if data_list is None:  # a built dataset may hold them serialised
        data_list = [dataset.get_data_info(i) for i in range(len(dataset))]
    name = type(dataset).__name__
    img_dir = dataset.data_prefix.get('img_path')
    ann_dir = dataset.data_prefix.get('seg_map_path')
    if _local_dir(img_dir) and not osp.isdir(img_dir):
        raise DataFilesError(
            f'{name}: the image folder {img_dir} does not exist: check '
            'data_root and data_prefix.img_path')
    if not data_list:
        if dataset.ann_file and osp.isfile(dataset.ann_file):
            raise DataFilesError(
                f'{name}: ann_file {dataset.ann_file} lists no images')
        if _local_dir(img_dir):
            raise DataFilesError(
                f'{name}: no images found under {img_dir} with suffix '
                f'{dataset.img_suffix!r} (found {_suffix_counts(img_dir)}): '
                'set img_suffix')
        return
    if not _local_dir(ann_dir):
        return
    if not osp.isdir(ann_dir):
        raise DataFilesError(
            f'{name}: the label folder {ann_dir} does not exist: check '
            'data_root and data_prefix.seg_map_path')
    missing = _missing(info.get('seg_map_path') for info in data_list)
    if missing:
        raise DataFilesError(
            f'{name}: {len(missing)} of {len(data_list)} images have no '
            f'label file with suffix {dataset.seg_map_suffix!r} under '
            f'{ann_dir} (e.g. {missing[0]}; found {_suffix_counts(ann_dir)}'
            '): set seg_map_suffix (labels are named like their images)')
    if dataset.ann_file and osp.isfile(dataset.ann_file):
        absent = _missing(info.get('img_path') for info in data_list)
        if absent:
            raise DataFilesError(
                f'{name}: {len(absent)} images listed in {dataset.ann_file} '
                f'do not exist with suffix {dataset.img_suffix!r} under '
                f'{img_dir} (e.g. {absent[0]}): set img_suffix')


def _missing(paths: Iterable[Optional[str]]) -> List[str]:
    return [p for p in paths if p and not osp.isfile(p)]


class DataFilesCheckMixin:
    """Runs :func:`check_data_files` on the samples a dataset lists, then
    :func:`~mmseg_segvit.datasets.label_values.check_label_values` on a
    sample of their label maps (against the classes of its metainfo).

    Put it before the dataset class: ``class MyDataset(DataFilesCheckMixin,
    BaseSegDataset)``.
    """

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix.get('img_path')
        if _local_dir(img_dir) and not osp.isdir(img_dir):
            check_data_files(self, [])  # names the missing folder
        data_list = super().load_data_list()
        check_data_files(self, data_list)
        check_label_values(self, data_list)
        self.label_values_checked = True
        return data_list


@DATASETS.register_module()
class CheckedSegDataset(NamedFileErrorsMixin, DataFilesCheckMixin,
                        BaseSegDataset):
    """``BaseSegDataset`` (a folder of images and label maps) that checks its
    folders and what a sample of its label maps holds when it is built
    (:func:`check_data_files`, :func:`check_label_values`) and names the files
    of a sample that does not load (:class:`NamedFileErrorsMixin`)."""
