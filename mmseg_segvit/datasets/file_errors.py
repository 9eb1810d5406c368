"""Errors that name the files of a sample that cannot be loaded.

MMSegmentation's loading transforms report a corrupt or empty label as
``cannot identify image file <_io.BytesIO object at 0x...>`` or
``image file is truncated``, and an empty image as an OpenCV assertion,
without saying which file it was. :class:`NamedFileErrorsMixin` (used by
this package's datasets, ``CheckedSegDataset`` and the demo's) wraps
``prepare_data`` (the one place where a sample's file names and its
pipeline meet) so that such a failure is re-raised as a
:class:`SampleLoadError` that names the image and label files of the
sample that does not decode; the original error stays attached as its
cause. For MMSeg's own dataset classes, :func:`install` does the same to
``BaseSegDataset`` when called; importing the package does not call it.
Errors of samples whose files decode (a transform's own error)
keep their type and get a note with the file names (Python >= 3.11).
Missing files are left alone: their ``FileNotFoundError`` already names
the path.
"""
import functools
import os.path as osp
from typing import Any, Callable

from mmseg.datasets import BaseSegDataset
from PIL import Image

__all__ = ['SampleLoadError', 'NamedFileErrorsMixin', 'install']

_FILE_KEYS = ('img_path', 'seg_map_path')


class SampleLoadError(OSError):
    """A sample of a dataset could not be loaded; names its files."""


def _decodes(path: str) -> bool:
    """Whether Pillow can read the whole file (a local file only)."""
    if not osp.isfile(path):
        return True  # another storage backend: do not guess
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except Exception:
        return False


def _name_files(dataset: BaseSegDataset, idx: int, err: Exception) -> None:
    """Re-raise ``err`` of sample ``idx`` naming its files (see module)."""
    if isinstance(err, (FileNotFoundError, SampleLoadError)):
        raise err
    info = dataset.get_data_info(idx)
    paths = {k: info[k] for k in _FILE_KEYS if info.get(k)}
    if not paths:
        raise err
    broken = {k: p for k, p in paths.items() if not _decodes(p)}
    if not broken:  # the files decode: not a file problem
        if hasattr(err, 'add_note'):  # Python >= 3.11
            err.add_note(f'while loading sample {idx} of '
                         f'{type(dataset).__name__}: {paths}')
        raise err
    files = ', '.join(f'{k}={p!r}' for k, p in broken.items())
    raise SampleLoadError(
        f'{type(dataset).__name__} could not load sample {idx} '
        f'({files}): {type(err).__name__}: {err}. The file may be '
        'corrupt, truncated or empty.') from err


def _naming_files(prepare_data: Callable) -> Callable:

    @functools.wraps(prepare_data)
    def wrapper(self, idx: int) -> Any:
        try:
            return prepare_data(self, idx)
        except Exception as err:
            _name_files(self, idx, err)

    wrapper._names_files = True
    return wrapper


class NamedFileErrorsMixin:
    """A dataset whose samples that fail to load name their files.

    Put it before the dataset class: ``class MyDataset(NamedFileErrorsMixin,
    ADE20KDataset)``. Raises :class:`SampleLoadError` for files that do not
    decode; other errors keep their type (with a note naming the files).
    """

    def prepare_data(self, idx: int) -> Any:
        try:
            return super().prepare_data(idx)
        except Exception as err:
            _name_files(self, idx, err)


def install() -> bool:
    """Wrap ``BaseSegDataset.prepare_data`` once, for every MMSeg dataset in
    this process. Only on request: importing the package does not call it.

    Returns:
        bool: True if the wrapper was installed by this call.
    """
    if getattr(BaseSegDataset.prepare_data, '_names_files', False):
        return False
    BaseSegDataset.prepare_data = _naming_files(BaseSegDataset.prepare_data)
    return True
