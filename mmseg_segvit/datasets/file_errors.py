"""Errors that name the files of a sample that cannot be loaded.

MMSegmentation's loading transforms report a corrupt or empty label as
``cannot identify image file <_io.BytesIO object at 0x...>`` or
``image file is truncated``, and an empty image as an OpenCV assertion,
without saying which file it was. :func:`install` wraps
``BaseSegDataset.prepare_data`` (the one place where a sample's file names
and its pipeline meet) so that such a failure is re-raised as a
:class:`SampleLoadError` that names the image and label files of the
sample that does not decode; the original error stays attached as its
cause. Errors of samples whose files decode (a transform's own error)
keep their type and get a note with the file names (Python >= 3.11).
Missing files are left alone: their ``FileNotFoundError`` already names
the path.
"""
import functools
import os.path as osp
from typing import Any, Callable

from mmseg.datasets import BaseSegDataset
from PIL import Image

__all__ = ['SampleLoadError', 'install']

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


def _naming_files(prepare_data: Callable) -> Callable:

    @functools.wraps(prepare_data)
    def wrapper(self, idx: int) -> Any:
        try:
            return prepare_data(self, idx)
        except (FileNotFoundError, SampleLoadError):
            raise
        except Exception as err:
            info = self.get_data_info(idx)
            paths = {k: info[k] for k in _FILE_KEYS if info.get(k)}
            if not paths:
                raise
            broken = {k: p for k, p in paths.items() if not _decodes(p)}
            if not broken:  # the files decode: not a file problem
                if hasattr(err, 'add_note'):  # Python >= 3.11
                    err.add_note(f'while loading sample {idx} of '
                                 f'{type(self).__name__}: {paths}')
                raise
            files = ', '.join(f'{k}={p!r}' for k, p in broken.items())
            raise SampleLoadError(
                f'{type(self).__name__} could not load sample {idx} '
                f'({files}): {type(err).__name__}: {err}. The file may be '
                'corrupt, truncated or empty.') from err

    wrapper._names_files = True
    return wrapper


def install() -> bool:
    """Wrap ``BaseSegDataset.prepare_data`` once.

    Returns:
        bool: True if the wrapper was installed by this call.
    """
    if getattr(BaseSegDataset.prepare_data, '_names_files', False):
        return False
    BaseSegDataset.prepare_data = _naming_files(BaseSegDataset.prepare_data)
    return True
