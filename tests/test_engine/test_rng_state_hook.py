"""Determinism and exact resume through mmengine's Runner."""
import copy
import types

import pytest
import torch
from fixtures import tiny_segmentor_cfg
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmseg_segvit.engine import RNGStateHook

ITERS, SAVE_AT = 6, 3


class _RecordLoss(Hook):
    """Keep the total loss of every training iteration."""

    def __init__(self):
        self.losses = {}

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self.losses[runner.iter + 1] = outputs['loss'].item()


@pytest.fixture(scope='module', autouse=True)
def _train_on_the_cpu():
    """Train on the CPU on every machine.

    Where there is a GPU the Runner would train (and resume) on it, and
    ``deterministic=True`` makes CUDA ops without a deterministic kernel raise
    (the backward of bilinear interpolation; cuBLAS without
    ``CUBLAS_WORKSPACE_CONFIG``).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr('mmengine.runner.runner.get_device', lambda: 'cpu')
        yield


@pytest.fixture
def restore_determinism():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def _runner(work_dir, data_root, resume=False, extra_hooks=()):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(
            type='RandomResize',
            scale=(64, 64),
            ratio_range=(0.75, 1.5),
            keep_ratio=True),
        dict(type='RandomCrop', crop_size=(64, 64), cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs')
    ]
    recorder = _RecordLoss()
    runner = Runner(
        model=tiny_segmentor_cfg(num_classes=12, size=(64, 64)),
        work_dir=str(work_dir),
        train_dataloader=dict(
            batch_size=2,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dict(
                type='SegVitShapesDataset',
                data_root=data_root,
                indices=12,
                data_prefix=dict(
                    img_path='img_dir/train', seg_map_path='ann_dir/train'),
                pipeline=pipeline)),
        optim_wrapper=dict(
            type='OptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01),
            clip_grad=dict(max_norm=1.0)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=4)
        ],
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=ITERS),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', by_epoch=False, interval=SAVE_AT),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[recorder, *copy.deepcopy(list(extra_hooks))],
        randomness=dict(seed=0, deterministic=True),
        resume=resume,
        load_from=str(work_dir / f'iter_{SAVE_AT}.pth') if resume else None,
        default_scope='mmseg',
        log_level='WARNING')
    return runner, recorder


HOOKS = [dict(type='RNGStateHook')]


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, demo_data_root):
    """A run of ITERS iterations that saves a checkpoint at SAVE_AT."""
    before = torch.are_deterministic_algorithms_enabled()
    work_dir = tmp_path_factory.mktemp('run')
    runner, recorder = _runner(work_dir, demo_data_root, extra_hooks=HOOKS)
    runner.train()
    torch.use_deterministic_algorithms(before)
    return work_dir, recorder.losses


@pytest.mark.slow
def test_same_seed_gives_same_losses(uninterrupted, tmp_path, demo_data_root,
                                     restore_determinism):
    _, first = uninterrupted
    runner, second = _runner(tmp_path, demo_data_root, extra_hooks=HOOKS)
    runner.train()
    assert list(first) == list(range(1, ITERS + 1))
    assert second.losses == first
    assert all(torch.isfinite(torch.tensor(v)) for v in first.values())


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_losses(uninterrupted, demo_data_root,
                                               restore_determinism):
    work_dir, full = uninterrupted
    ckpt = torch.load(work_dir / f'iter_{SAVE_AT}.pth', weights_only=True)
    assert ckpt['rng_state'][0]['torch'].dtype == torch.uint8
    runner, resumed = _runner(
        work_dir, demo_data_root, resume=True, extra_hooks=HOOKS)
    runner.train()
    assert list(resumed.losses) == list(range(SAVE_AT + 1, ITERS + 1))
    assert resumed.losses == {i: full[i] for i in resumed.losses}


@pytest.mark.parametrize('device', [
    'cpu',
    pytest.param(
        'cuda',
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason='needs a CUDA device'))
])
def test_states_are_restored_from_the_device_a_resume_loads_onto(device):
    """``Runner.resume`` loads the checkpoint with ``map_location`` set to the
    training device, so on a CUDA machine the saved states arrive as CUDA
    tensors; the generators still get them back."""
    if device == 'cuda':
        torch.cuda.init()  # the CUDA generator state is saved once in use
    hook, checkpoint = RNGStateHook(), {}
    hook.before_save_checkpoint(None, checkpoint)
    want = torch.rand(4), torch.rand(4, device=device)
    loaded = [{
        key: value.to(device)
        if torch.is_tensor(value) else [v.to(device) for v in value]
        for key, value in state.items()
    } for state in checkpoint['rng_state']]
    assert device == 'cpu' or 'cuda' in loaded[0]
    hook.after_load_checkpoint(None, dict(rng_state=loaded))
    torch.rand(4), torch.rand(4, device=device)  # the states move on
    hook.before_train_iter(types.SimpleNamespace(iter=SAVE_AT), 0)
    got = torch.rand(4), torch.rand(4, device=device)
    assert all(torch.equal(g, w) for g, w in zip(got, want))
