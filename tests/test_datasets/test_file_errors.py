"""Corrupt or missing data files: the error names the file."""
import os
import shutil
import sys

import pytest
from torch.utils.data import DataLoader

from mmseg_segvit.datasets import CheckedSegDataset, SampleLoadError


def _small_dataset(src_root, dst_root, count=3):
    """A copy of ``count`` validation samples of the demo dataset."""
    names = sorted(os.listdir(os.path.join(src_root, 'img_dir', 'val')))
    for sub in ('img_dir', 'ann_dir'):
        os.makedirs(dst_root / sub)
        for name in names[:count]:
            shutil.copy(
                os.path.join(src_root, sub, 'val', name),
                dst_root / sub / name)
    return [dst_root / sub / names[1] for sub in ('img_dir', 'ann_dir')]


def _dataset(root, extra=()):
    return CheckedSegDataset(
        data_root=str(root),
        data_prefix=dict(img_path='img_dir', seg_map_path='ann_dir'),
        img_suffix='.png',
        seg_map_suffix='.png',
        metainfo=dict(classes=tuple(str(i) for i in range(12))),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'), *extra,
            dict(type='PackSegInputs')
        ])


def _break(path, how):
    data = path.read_bytes()
    if how == 'garbage':
        path.write_bytes(b'\x00not an image' * 16)
    elif how == 'truncated':
        path.write_bytes(data[:len(data) // 2])
    elif how == 'empty':
        path.write_bytes(b'')
    else:  # missing
        path.unlink()


@pytest.mark.parametrize('how', ['garbage', 'truncated', 'empty', 'missing'])
@pytest.mark.parametrize('which', ['image', 'label'])
def test_bad_data_file_error_names_the_file(tmp_path, demo_data_root, which,
                                            how):
    img, label = _small_dataset(demo_data_root, tmp_path / 'data')
    dataset = _dataset(tmp_path / 'data')
    assert dataset[0]['inputs'].shape[-2:] == (128, 128)  # others load
    bad = img if which == 'image' else label
    _break(bad, how)
    error = FileNotFoundError if how == 'missing' else SampleLoadError
    with pytest.raises(error) as err:
        dataset[1]
    assert str(bad) in str(err.value)
    if how != 'missing':  # only the broken file is named
        good = label if which == 'image' else img
        assert str(good) not in str(err.value)
    dataset[2]


def test_bad_label_in_a_dataloader_worker_names_the_file(
        tmp_path, demo_data_root):
    _, label = _small_dataset(demo_data_root, tmp_path / 'data')
    _break(label, 'garbage')
    loader = DataLoader(
        _dataset(tmp_path / 'data'),
        batch_size=1,
        num_workers=1,
        collate_fn=lambda x: x)
    with pytest.raises(SampleLoadError, match=str(label)):
        list(loader)


def _bad_transform(results):
    return results['no_such_key']


def test_transform_errors_on_good_files_keep_their_type(
        tmp_path, demo_data_root):
    img, label = _small_dataset(demo_data_root, tmp_path / 'data')
    dataset = _dataset(tmp_path / 'data', extra=[_bad_transform])
    with pytest.raises(KeyError, match='no_such_key') as err:
        dataset[1]
    if sys.version_info >= (3, 11):
        assert str(img) in ' '.join(err.value.__notes__)
