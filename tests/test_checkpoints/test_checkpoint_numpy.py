"""Checkpoints written under numpy 1.x or 2.x load with weights_only=True.

numpy 1.x pickles its array and scalar rebuilders as
``numpy.core.multiarray._reconstruct`` / ``numpy.core.multiarray.scalar``,
numpy 2.x as ``numpy._core.multiarray.*``. The files here come from a real
mmengine ``Runner`` (training, validation with a best checkpoint, the message
hub, custom hooks' state) and are rewritten to carry each spelling.
"""
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from fixtures import NUMPY1, NUMPY2, rewrite_globals, tiny_segmentor_cfg
from mmengine.config import ConfigDict
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint
from mmseg.registry import MODELS

from mmseg_segvit.checkpoints import UnsafeCheckpointError, load_weights_file
from mmseg_segvit.compat import NUMPY_MULTIARRAY_MODULES
from mmseg_segvit.tools import drop_class_weights


def _pipeline(train):
    resize = dict(type='Resize', scale=(64, 64))
    load_ann = dict(type='LoadAnnotations')
    steps = [resize, load_ann] if not train else [load_ann, resize]
    return [dict(type='LoadImageFromFile'), *steps, dict(type='PackSegInputs')]


def _runner(work_dir, data_root, max_iters=2, resume_from=None):

    def dataset(split, count):
        return dict(
            type='SegVitShapesDataset',
            data_root=data_root,
            indices=count,
            data_prefix=dict(
                img_path=f'img_dir/{split}', seg_map_path=f'ann_dir/{split}'),
            pipeline=_pipeline(split == 'train'))

    return Runner(
        model=ConfigDict(tiny_segmentor_cfg(num_classes=12, size=(64, 64))),
        work_dir=str(work_dir),
        train_dataloader=dict(
            batch_size=2,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dataset('train', 4)),
        val_dataloader=dict(
            batch_size=1,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dataset('val', 2)),
        val_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
        val_cfg=dict(type='ValLoop'),
        optim_wrapper=dict(
            type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=4)
        ],
        train_cfg=dict(
            type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook',
                by_epoch=False,
                interval=2,
                save_best='mIoU'),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='RNGStateHook'),
                      dict(type='EMAHook')],
        randomness=dict(seed=0),
        resume=resume_from is not None,
        load_from=resume_from,
        default_scope='mmseg',
        log_level='WARNING')


@pytest.fixture(scope='module')
def run_files(tmp_path_factory, demo_data_root):
    """The checkpoints of a real run: last iteration and best mIoU."""
    work_dir = tmp_path_factory.mktemp('run')
    _runner(work_dir, demo_data_root).train()
    files = {
        'last': str(work_dir / 'iter_2.pth'),
        'best': str(work_dir / 'best_mIoU_iter_2.pth')
    }
    for path in files.values():
        assert osp.isfile(path)
    return files


def _as_numpy1(path, tmp_path):
    out = str(tmp_path / ('np1_' + osp.basename(path)))
    pickled = rewrite_globals(path, out, NUMPY2, NUMPY1)
    assert NUMPY2 not in pickled
    assert b'cnumpy.core.multiarray\n_reconstruct\n' in pickled
    assert b'cnumpy.core.multiarray\nscalar\n' in pickled
    return out


@pytest.mark.parametrize('which', ['last', 'best'])
@pytest.mark.parametrize('spelling', ['numpy2', 'numpy1'])
def test_runner_checkpoint_loads_with_weights_only(run_files, tmp_path, which,
                                                   spelling):
    path = run_files[which]
    if spelling == 'numpy1':
        path = _as_numpy1(path, tmp_path)
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    hub = ckpt['message_hub']
    # logged scalars (numpy arrays inside HistoryBuffers) and the metric
    # of the best checkpoint (a numpy float from IoUMetric)
    assert isinstance(hub['log_scalars']['train/loss'], HistoryBuffer)
    assert np.isfinite(hub['log_scalars']['train/loss'].mean())
    assert isinstance(hub['log_scalars']['val/mIoU'], HistoryBuffer)
    assert 0 <= float(hub['runtime_info']['best_score']) <= 100
    assert ckpt['meta']['iter'] == 2
    assert ckpt['rng_state'][0]['torch'].dtype == torch.uint8  # RNGStateHook
    assert 'ema_state_dict' in ckpt  # EMAHook
    # the loaders of mim test, init_model and the tools
    assert _load_checkpoint(path, map_location='cpu')['meta']['iter'] == 2
    assert load_weights_file(path)['meta']['iter'] == 2
    model = MODELS.build(
        ConfigDict(tiny_segmentor_cfg(num_classes=12, size=(64, 64))))
    load_checkpoint(model, path, map_location='cpu', strict=False)
    torch.testing.assert_close(model.decode_head.q.weight,
                               ckpt['state_dict']['decode_head.q.weight'])


def test_resume_from_a_numpy1_checkpoint(run_files, tmp_path, demo_data_root):
    """``--resume`` with a file written where numpy is 1.x."""
    path = _as_numpy1(run_files['last'], tmp_path)
    runner = _runner(
        tmp_path / 'resumed', demo_data_root, max_iters=3, resume_from=path)
    runner.train()
    assert runner.iter == 3


@pytest.mark.parametrize('spelling', ['numpy2', 'numpy1'])
def test_drop_class_weights_reads_both_spellings(run_files, tmp_path,
                                                 monkeypatch, spelling):
    path = run_files['last']
    if spelling == 'numpy1':
        path = _as_numpy1(path, tmp_path)
    out = tmp_path / 'out.pth'
    monkeypatch.setattr('sys.argv', ['x', path, str(out)])
    drop_class_weights.main()
    assert 'decode_head.q.weight' not in torch.load(
        out, weights_only=True)['state_dict']


def _hub_states():
    """Message hub states with and without logged scalars."""
    empty = MessageHub('numpy-empty')
    unused = MessageHub('numpy-unused')
    unused._log_scalars['train/loss'] = HistoryBuffer()  # nothing logged
    unused._resumed_keys['train/loss'] = True
    logged = MessageHub('numpy-logged')
    for value in (np.float32(0.5), np.float64(1.5), 2):
        logged.update_scalar('train/loss', value)
    logged.update_info('best_score', np.float64(42.5))
    logged.update_info('seed', np.int64(7))
    return [h.state_dict() for h in (empty, unused, logged)]


@pytest.mark.parametrize('module', NUMPY_MULTIARRAY_MODULES)
def test_message_hub_states_load_under_each_spelling(tmp_path, module):
    ckpt = dict(
        meta=dict(
            seed=np.int64(3),
            hist=np.arange(4, dtype=np.float32),
            empty=np.zeros((0, 3))),
        message_hubs=_hub_states(),
        state_dict={'w': torch.ones(1)})
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(ckpt, src)
    rewrite_globals(src, dst, NUMPY2, module.encode() + b'\n')
    loaded = torch.load(dst, weights_only=True)
    empty, unused, logged = loaded['message_hubs']
    assert empty['log_scalars'] == {}
    assert len(unused['log_scalars']['train/loss'].data[0]) == 0
    assert logged['log_scalars']['train/loss'].mean() == pytest.approx(4 / 3)
    assert logged['runtime_info']['best_score'] == 42.5
    assert loaded['meta']['seed'] == 3
    np.testing.assert_array_equal(loaded['meta']['hist'], [0, 1, 2, 3])


@pytest.mark.parametrize(
    'target',
    [
        b'numpy.testing._private.utils\nrunstring\n',  # exec()s a string
        b'numpy.core.multiarray\nfrombuffer\n',
        b'numpy.lib.npyio\nload\n',
        b'numpy.core.multiarray\n_reconstructx\n',
    ])
def test_other_numpy_globals_are_still_refused(tmp_path, target):
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(dict(meta=dict(seed=np.float64(1.0))), src)
    rewrite_globals(src, dst, NUMPY2 + b'scalar\n', target)
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global'):
        torch.load(dst, weights_only=True)
    with pytest.raises(UnsafeCheckpointError, match=str(dst)):
        load_weights_file(str(dst))


class _BigBytes:

    def __reduce__(self):
        return (bytes, (10, ))


def test_only_the_empty_bytes_call_is_allowed(tmp_path):
    """Empty numpy arrays pickle ``bytes()``; any other call is refused."""
    path = tmp_path / 'empty.pth'
    torch.save(dict(meta=dict(hist=np.zeros(0, np.float32))), path)
    assert torch.load(path, weights_only=True)['meta']['hist'].shape == (0, )
    torch.save(dict(meta=dict(x=_BigBytes())), path)
    with pytest.raises((pickle.UnpicklingError, RuntimeError), match='bytes'):
        torch.load(path, weights_only=True)
