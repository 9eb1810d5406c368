"""``clamped_resize``: MMSeg pipelines with ClampedResize for Resize, as the
configs build them from the stock ones."""
import pytest
from mmengine.config import Config

from mmseg_segvit.utils import clamped_resize, clamped_resize_pipelines

STOCK = 'mmseg::_base_/datasets/ade20k.py'


def test_resize_steps_become_clamped_and_the_rest_stays():
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0)),
        dict(type='Resize', scale=(2048, 512), keep_ratio=True),
        dict(type='RandomResize', scale=(64, 64), resize_type='Other'),
        dict(type='PackSegInputs')
    ]
    given = [dict(t) for t in pipeline]
    got = clamped_resize(pipeline)
    assert got == [
        pipeline[0],
        dict(pipeline[1], resize_type='ClampedResize'),
        dict(pipeline[2], type='ClampedResize'), pipeline[3], pipeline[4]
    ]
    assert pipeline == given  # the steps given are not changed


def test_test_time_aug_views_are_rewritten():
    tta = [
        dict(type='LoadImageFromFile'),
        dict(
            type='TestTimeAug',
            transforms=[[
                dict(type='Resize', scale_factor=r, keep_ratio=True)
                for r in (0.5, 1.0)
            ], [dict(type='RandomFlip', prob=1.)]])
    ]
    got = clamped_resize(tta)
    assert got[0] == tta[0]
    assert got[1]['transforms'] == [[
        dict(type='ClampedResize', scale_factor=r, keep_ratio=True)
        for r in (0.5, 1.0)
    ], [dict(type='RandomFlip', prob=1.)]]


def test_a_step_that_is_not_a_dict_is_refused():
    with pytest.raises(TypeError, match='should be a dict'):
        clamped_resize([dict(type='LoadImageFromFile'), 'Resize'])


def test_a_stock_config_keeps_no_resize(tmp_path):
    path = tmp_path / 'stock.py'
    path.write_text(f'_base_ = [{STOCK!r}]\n')
    cfg = Config.fromfile(str(path))
    train, test, tta = clamped_resize_pipelines(cfg)
    types = [t['type'] for t in test]
    types += [t['type'] for views in tta[1]['transforms'] for t in views]
    assert 'Resize' not in types and 'ClampedResize' in types
    assert [
        t.get('resize_type') for t in train if t['type'] == 'RandomResize'
    ] == ['ClampedResize']
    assert [len(p) for p in (train, test, tta)] == [
        len(cfg[k])
        for k in ('train_pipeline', 'test_pipeline', 'tta_pipeline')
    ]


def test_a_config_without_a_pipeline_is_refused():
    with pytest.raises(KeyError):
        clamped_resize_pipelines(dict(train_pipeline=[], test_pipeline=[]))
