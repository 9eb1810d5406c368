"""A dataset whose files do not match its settings stops before training with a
message that names the folder and the setting to change."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from fixtures import FINETUNE_CONFIG, FINETUNE_SIZE, make_finetune_model_tiny
from mmengine.config import Config
from mmengine.runner import Runner
from mmseg.datasets import ADE20KDataset, BaseSegDataset

from mmseg_segvit.datasets import (CheckedSegDataset, DataFilesCheckMixin,
                                   DataFilesError, check_data_files)


def _write(root, img_suffix='.png', seg_suffix='.png', count=4):
    """A folder dataset in the fine-tuning recipe's layout."""
    rng = np.random.default_rng(0)
    shape = (FINETUNE_SIZE, FINETUNE_SIZE)
    for split in ('train', 'val'):
        for sub in ('img_dir', 'ann_dir'):
            os.makedirs(osp.join(root, sub, split))
        for i in range(count):
            label = rng.integers(0, 5, shape).astype(np.uint8)
            img = rng.integers(0, 255, (*shape, 3)).astype(np.uint8)
            cv2.imwrite(
                osp.join(root, 'img_dir', split, f'{i}{img_suffix}'), img)
            cv2.imwrite(
                osp.join(root, 'ann_dir', split, f'{i}{seg_suffix}'), label)
    return root


def _recipe_runner(root, work_dir):
    """The fine-tuning config (tiny model) on ``root``, no checkpoint."""
    cfg = Config.fromfile(FINETUNE_CONFIG)
    make_finetune_model_tiny(cfg.model)
    cfg.load_from = None
    cfg.work_dir = str(work_dir)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.data_root = root
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg.update(max_iters=1, val_interval=1)
    cfg.param_scheduler = []
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    return Runner.from_cfg(cfg)


def test_recipe_with_png_images_stops_before_training(tmp_path):
    """The config says .jpg, the folder holds PNG images."""
    root = _write(str(tmp_path / 'my_dataset'), img_suffix='.png')
    runner = _recipe_runner(root, tmp_path / 'work')
    with pytest.raises(DataFilesError) as err:
        runner.train()
    folder = osp.join(root, 'img_dir', 'train')
    assert (f"no images found under {folder} with suffix '.jpg' (found 4 "
            '.png files): set img_suffix') in str(err.value)
    assert runner.message_hub.get_info('iter') is None  # no iteration ran


def test_recipe_with_labels_of_another_suffix_stops_before_training(tmp_path):
    root = _write(
        str(tmp_path / 'my_dataset'), img_suffix='.jpg', seg_suffix='.tif')
    runner = _recipe_runner(root, tmp_path / 'work')
    with pytest.raises(DataFilesError) as err:
        runner.train()
    folder = osp.join(root, 'ann_dir', 'train')
    message = str(err.value)
    assert (f"4 of 4 images have no label file with suffix '.png' under "
            f'{folder}') in message
    assert 'found 4 .tif files): set seg_map_suffix' in message


def test_recipe_with_matching_files_builds(tmp_path):
    root = _write(str(tmp_path / 'my_dataset'), img_suffix='.jpg')
    dataset = CheckedSegDataset(
        data_root=root,
        data_prefix=dict(
            img_path='img_dir/train', seg_map_path='ann_dir/train'),
        img_suffix='.jpg',
        metainfo=dict(classes=tuple('abcde')))
    assert len(dataset) == 4


def test_missing_folders_are_named(tmp_path):
    root = _write(str(tmp_path / 'data'))
    with pytest.raises(
            DataFilesError,
            match=r'image folder .*img_dir/test does not exist'):
        CheckedSegDataset(
            data_root=root, data_prefix=dict(img_path='img_dir/test'))
    with pytest.raises(
            DataFilesError,
            match=r'label folder .*labels does not exist.*'
            'seg_map_path'):
        CheckedSegDataset(
            data_root=root,
            img_suffix='.png',
            data_prefix=dict(img_path='img_dir/val', seg_map_path='labels'))


def test_check_as_a_function_and_as_a_mixin(tmp_path):
    root = _write(str(tmp_path / 'data'), img_suffix='.png')
    prefix = dict(img_path='img_dir/val', seg_map_path='ann_dir/val')
    # a stock dataset, built lazily, checked explicitly
    stock = ADE20KDataset(data_root=root, data_prefix=prefix, lazy_init=True)
    with pytest.raises(
            DataFilesError,
            match=r"suffix '\.jpg' \(found 4 "
            r'\.png files\): set img_suffix'):
        check_data_files(stock, stock.load_data_list())

    class CheckedADE(DataFilesCheckMixin, ADE20KDataset):
        pass

    with pytest.raises(DataFilesError, match='CheckedADE: no images found'):
        CheckedADE(data_root=root, data_prefix=prefix)
    good = CheckedADE(data_root=root, data_prefix=prefix, img_suffix='.png')
    assert len(good) == 4
    check_data_files(good)
    assert isinstance(good, BaseSegDataset)
