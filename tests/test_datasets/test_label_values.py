"""What a dataset's label maps hold is checked when it is built."""
import os
import warnings

import numpy as np
import pytest
from mmseg.registry import DATASETS
from PIL import Image

from mmseg_segvit.datasets import (LabelValuesError, LabelValuesWarning,
                                   check_label_values)

CLASSES = ('background', 'object')


def _folder(root, labels, suffix='.png'):
    """img_dir/ann_dir with one 64x64 image per label array."""
    os.makedirs(root / 'img', exist_ok=True)
    os.makedirs(root / 'ann', exist_ok=True)
    for i, label in enumerate(labels):
        Image.fromarray(np.full((64, 64, 3), 100,
                                np.uint8)).save(root / 'img' / f'{i:02d}.png')
        Image.fromarray(label).save(root / 'ann' / f'{i:02d}{suffix}')
    return root


def _build(root, classes=CLASSES, **kwargs):
    return DATASETS.build(
        dict(
            type='CheckedSegDataset',
            data_root=str(root),
            data_prefix=dict(img_path='img', seg_map_path='ann'),
            img_suffix='.png',
            seg_map_suffix='.png',
            metainfo=dict(classes=classes),
            pipeline=[],
            **kwargs))


def _mask(values=(0, 1)):
    label = np.full((64, 64), values[0], np.uint8)
    label[16:48, 16:48] = values[1]
    return label


def test_sound_labels_pass_without_a_word(tmp_path):
    root = _folder(tmp_path, [_mask(), _mask((0, 255)), _mask((1, 0))])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        dataset = _build(root)
    assert len(dataset) == 3
    assert dataset.label_values_checked


# label maps a dataset refuses, and what the refusal says
REFUSED = dict(
    binary_masks_saved_as_0_and_255=(
        [_mask((0, 255))] * 3,
        (r'only the values 0 and 255 .*ann.0\d\.png.*'
         r'binary masks saved as 0/255.*Map 255 to 1'),
    ),
    colour_label_maps=(
        [_mask(), np.stack([_mask((0, c)) for c in (1, 2, 3)], -1)],
        (r'ann.01\.png has 3 channels .*colour image.*'
         r'coloured by class'),
    ),
    values_above_the_class_count=(
        [_mask((0, 1)), _mask((0, 7))],
        (r'label values \[7\] \(e\.g\. in .*ann.01\.png'
         r'\).*2 classes \(0\.\.1\)'),
    ),
)


@pytest.mark.parametrize('labels, match', REFUSED.values(), ids=REFUSED)
def test_unusable_label_maps_are_refused_naming_the_file(
        tmp_path, labels, match):
    root = _folder(tmp_path, labels)
    with pytest.raises(LabelValuesError, match=match):
        _build(root)


def test_labels_counted_from_one_name_reduce_zero_label(tmp_path):
    root = _folder(tmp_path, [_mask((1, 2))] * 2)
    with pytest.raises(
            LabelValuesError,
            match=r'label values \[2\] .*ann.0\d\.png.* 2 classes'
            r'.*set reduce_zero_label=True'):
        _build(root)
    assert len(_build(root, reduce_zero_label=True)) == 2


def test_sixteen_bit_labels_above_255_are_refused(tmp_path):
    root = _folder(tmp_path, [_mask()])
    Image.fromarray(_mask(
        (0, 1)).astype(np.uint16) * 300).save(tmp_path / 'ann' / '00.png')
    with pytest.raises(
            LabelValuesError, match=r'uint16 with values up to '
            r'300.*8 bits'):
        _build(root)


def test_a_class_in_no_label_map_is_named_with_reduce_zero_label(tmp_path):
    """Labels counted from 0 under reduce_zero_label=True: label 0 is ignored
    and the last listed class can never occur."""
    root = _folder(tmp_path, [_mask((0, 1))] * 2)
    with pytest.warns(
            LabelValuesWarning,
            match=r"1 of the 2 listed classes occur in none of "
            r"the 2 label maps: 1 \('object'\).*"
            r'set reduce_zero_label=False'):
        _build(root, reduce_zero_label=True)


def test_a_sample_of_a_large_dataset_is_read(tmp_path):
    root = _folder(tmp_path, [_mask()] * 5)
    dataset = _build(root)
    report = check_label_values(dataset, sample_size=3)
    assert (report.files, report.total) == (3, 5)
    assert report.values == {0, 1}


def test_a_label_map_one_pixel_high_is_refused_naming_it(tmp_path):
    root = _folder(tmp_path, [_mask()])
    Image.fromarray(np.zeros((1, 300),
                             np.uint8)).save(tmp_path / 'ann' / '00.png')
    with pytest.raises(
            LabelValuesError,
            match=r'ann.00\.png is 1x300: '
            r"MMSeg's LoadAnnotations squeezes"):
        _build(root)
