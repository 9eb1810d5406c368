"""The embedded demo dataset."""
import os.path as osp

import numpy as np
import pytest
from mmseg.registry import DATASETS

from mmseg_segvit.datasets.shapes_generator import (CLASSES, PALETTE, SPLITS,
                                                    dataset_is_complete,
                                                    render_scene)


def test_render_is_deterministic_and_labels_in_range():
    img_a, label_a = render_scene(3)
    img_b, label_b = render_scene(3)
    np.testing.assert_array_equal(img_a, img_b)
    np.testing.assert_array_equal(label_a, label_b)
    assert img_a.shape == (128, 128, 3) and img_a.dtype == np.uint8
    assert label_a.shape == (128, 128)
    assert label_a.max() < len(CLASSES)
    assert not np.array_equal(render_scene(4)[1], label_a)


def test_every_class_occurs_and_scenes_have_several_classes():
    seen = set()
    for seed in range(40):
        label = render_scene(seed)[1]
        assert len(np.unique(label)) >= 2
        seen.update(np.unique(label).tolist())
    assert seen == set(range(len(CLASSES)))
    assert len(PALETTE) == len(CLASSES)


def test_generated_layout_and_dataset_class(demo_data_root):
    assert dataset_is_complete(demo_data_root)
    dataset = DATASETS.build(
        dict(
            type='SegVitShapesDataset',
            data_root=demo_data_root,
            data_prefix=dict(
                img_path='img_dir/val', seg_map_path='ann_dir/val'),
            pipeline=[]))
    assert len(dataset) == SPLITS['val']
    assert dataset.metainfo['classes'] == CLASSES
    info = dataset[0]
    assert osp.basename(info['img_path']) == '00000.png'
    assert info['seg_map_path'].endswith(
        osp.join('ann_dir', 'val', '00000.png'))


def test_missing_folder_is_a_clear_error(tmp_path):
    missing = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match='nowhere'):
        DATASETS.build(
            dict(
                type='SegVitShapesDataset',
                data_root=missing,
                generate=False,
                pipeline=[]))
    assert not osp.exists(missing)


def test_make_demo_data_keeps_an_existing_dataset_and_says_so(
        demo_data_root, capsys, monkeypatch):
    from mmseg_segvit.tools import make_demo_data
    monkeypatch.setattr('sys.argv',
                        ['make_demo_data', demo_data_root, '--seed', '5'])
    make_demo_data.main()
    out = capsys.readouterr().out
    assert 'already holds a complete demo dataset: kept as it is' in out
    assert '--seed 5' in out
