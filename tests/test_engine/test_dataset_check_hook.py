"""A run whose head and dataset disagree on the classes does not start."""
import os

import numpy as np
import pytest
from fixtures import tiny_segmentor_cfg
from mmengine.config import ConfigDict
from mmengine.runner import Runner
from PIL import Image

from mmseg_segvit.datasets import LabelValuesError
from mmseg_segvit.engine import DatasetCheckHook
from mmseg_segvit.engine.dataset_check_hook import head_class_counts


def _folder(root, values=(0, 1), count=2):
    for sub in ('img', 'ann'):
        os.makedirs(root / sub, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((32, 32, 3), 90,
                                np.uint8)).save(root / 'img' / f'{i}.png')
        label = np.full((32, 32), values[0], np.uint8)
        label[8:24, 8:24] = values[1]
        Image.fromarray(label).save(root / 'ann' / f'{i}.png')
    return str(root)


def _runner(tmp_path,
            root,
            num_classes,
            classes,
            dataset_type='BaseSegDataset',
            load_from=None,
            hooks=('DatasetCheckHook', )):
    dataset = dict(
        type=dataset_type,
        data_root=root,
        data_prefix=dict(img_path='img', seg_map_path='ann'),
        img_suffix='.png',
        seg_map_suffix='.png',
        metainfo=dict(classes=classes),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')
        ])
    loader = dict(
        batch_size=1,
        num_workers=0,
        dataset=dataset,
        sampler=dict(type='DefaultSampler', shuffle=False))
    return Runner(
        model=ConfigDict(tiny_segmentor_cfg(num_classes=num_classes)),
        work_dir=str(tmp_path / 'work'),
        train_dataloader=loader,
        train_cfg=dict(
            type='IterBasedTrainLoop', max_iters=1, val_interval=10),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        val_dataloader=loader,
        val_cfg=dict(type='ValLoop'),
        val_evaluator=dict(type='CheckedIoUMetric'),
        test_dataloader=loader,
        test_cfg=dict(type='TestLoop'),
        test_evaluator=dict(type='CheckedIoUMetric'),
        custom_hooks=[dict(type=h) for h in hooks],
        load_from=load_from,
        default_hooks=dict(checkpoint=None, logger=None),
        default_scope='mmseg')


@pytest.mark.parametrize('run', ['train', 'test'])
def test_class_count_mismatch_stops_the_run_naming_both(tmp_path, run):
    root = _folder(tmp_path / 'data')
    runner = _runner(tmp_path, root, num_classes=3, classes=('a', 'b'))
    loader = f'{run}_dataloader'
    with pytest.raises(
            ValueError,
            match=rf"model\.decode_head\.num_classes is 3 but "
            rf"{loader}\.dataset \(BaseSegDataset\) lists 2 "
            rf"classes in its metainfo \('a', 'b'\).*"
            rf"{loader}\.dataset\.metainfo"):
        getattr(runner, run)()


def test_stock_datasets_get_their_labels_checked_by_the_hook(tmp_path):
    root = _folder(tmp_path / 'data', values=(0, 255))
    runner = _runner(tmp_path, root, num_classes=2, classes=('a', 'b'))
    with pytest.raises(LabelValuesError, match='only the values 0 and 255'):
        runner.test()


def test_a_consistent_run_tests(tmp_path):
    root = _folder(tmp_path / 'data')
    runner = _runner(tmp_path, root, num_classes=2, classes=('a', 'b'))
    metrics = runner.test()
    assert 'mIoU' in metrics
    assert runner.test_dataloader.dataset.label_values_checked


def test_head_class_counts_lists_decode_and_auxiliary_heads():
    from mmseg.registry import MODELS
    cfg = tiny_segmentor_cfg(num_classes=4)
    cfg['auxiliary_head'] = dict(
        type='FCNHead',
        in_channels=32,
        channels=8,
        num_convs=1,
        num_classes=4,
        in_index=1)
    model = MODELS.build(cfg)
    assert head_class_counts(model) == [('model.decode_head.num_classes', 4),
                                        ('model.auxiliary_head.num_classes', 4)
                                        ]
    assert DatasetCheckHook.priority == 'VERY_HIGH'


@pytest.mark.parametrize('layout', ['bare', 'no_meta'])
def test_the_test_run_loads_checkpoints_without_meta(tmp_path, layout):
    """``mim test --checkpoint`` (the runner's load_from) with a bare state
    dict or one without ``meta``, with the shipped custom hooks."""
    import torch
    root = _folder(tmp_path / 'data')
    runner = _runner(tmp_path, root, num_classes=2, classes=('a', 'b'))
    state = runner.model.state_dict()
    path = str(tmp_path / f'{layout}.pth')
    torch.save(state if layout == 'bare' else dict(state_dict=state), path)
    runner = _runner(
        tmp_path,
        root,
        num_classes=2,
        classes=('a', 'b'),
        load_from=path,
        hooks=('RNGStateHook', 'DatasetCheckHook'))
    metrics = runner.test()
    assert 'mIoU' in metrics
    got = runner.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())
