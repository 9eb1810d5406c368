"""The demo dataset class: procedural textured shapes (12 classes)."""
import os.path as osp

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .data_files import DataFilesCheckMixin
from .file_errors import NamedFileErrorsMixin
from .shapes_generator import (CLASSES, PALETTE, dataset_is_complete,
                               generate_shapes_dataset)

__all__ = ['SegVitShapesDataset']


@DATASETS.register_module()
class SegVitShapesDataset(NamedFileErrorsMixin, DataFilesCheckMixin,
                          BaseSegDataset):
    """Procedural scenes of textured shapes in MMSegmentation's layout.

    ``img_dir/{train,val}/*.png`` with labels of the same name in
    ``ann_dir``; label 0 is a real class (sky), 255 is ignored. Its folders
    are checked when it is built (:func:`check_data_files`).

    Args:
        generate (bool): Create the dataset under ``data_root`` when the
            folder does not exist yet (deterministic, a few seconds). If
            False, a missing folder is an error. Default: True.
        **kwargs: Arguments of ``BaseSegDataset``.
    """
    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 generate: bool = True,
                 **kwargs) -> None:
        root = kwargs.get('data_root')
        if root and not osp.exists(root) and generate:
            generate_shapes_dataset(root)
        if root and not dataset_is_complete(root):
            raise FileNotFoundError(
                f'demo dataset folder {root!r} is missing or incomplete; '
                'create it with `python -m mmseg_segvit.tools.make_demo_data '
                f'{root}` or set generate=True')
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)
