"""`--tta` needs a `tta_pipeline` next to the `tta_model` of MMSeg's runtime.

The demo configs run their TTA pipeline on a generated demo image; every config
that declares `tta_model` must have a `tta_pipeline`.
"""
import glob
import os.path as osp

import numpy as np
import pytest
from fixtures import REPO
from mmengine.config import Config
from mmseg.registry import DATASETS

SEGVIT = osp.join(REPO, 'configs', 'segvit')
DEMOS = sorted(glob.glob(osp.join(SEGVIT, '*shapes-128x128.py')))
ALL = sorted(glob.glob(osp.join(SEGVIT, '**', '*.py'), recursive=True))


def _stem(path):
    return osp.splitext(osp.basename(path))[0]


def test_the_six_demo_configs_are_covered():
    assert len(DEMOS) == 6


@pytest.mark.parametrize('path', ALL, ids=_stem)
def test_every_config_with_a_tta_model_has_a_tta_pipeline(path):
    cfg = Config.fromfile(path, import_custom_modules=False)
    if 'tta_model' in cfg:
        assert 'tta_pipeline' in cfg, f'{path}: --tta needs tta_pipeline'
        assert cfg.tta_pipeline[0].type == 'LoadImageFromFile'
        assert cfg.tta_pipeline[-1].type == 'TestTimeAug'


def _dataset(cfg, root, pipeline):
    import mmseg_segvit  # noqa: F401  (registers the demo dataset)
    dataset = dict(
        cfg.test_dataloader.dataset,
        data_root=root,
        pipeline=pipeline,
        indices=1)
    return DATASETS.build(dataset)


@pytest.mark.parametrize('path', DEMOS, ids=_stem)
def test_demo_tta_pipeline_gives_three_scales_and_flips(path, demo_data_root):
    cfg = Config.fromfile(path, import_custom_modules=False)
    plain = _dataset(cfg, demo_data_root, cfg.test_pipeline)[0]
    views = _dataset(cfg, demo_data_root, cfg.tta_pipeline)[0]
    img = plain['inputs']
    label = plain['data_samples'].gt_sem_seg.data
    assert img.shape[1:] == (128, 128)  # test_pipeline keeps the demo size

    assert len(views['inputs']) == len(views['data_samples']) == 6
    seen = set()
    for inputs, sample in zip(views['inputs'], views['data_samples']):
        size = tuple(inputs.shape[1:])
        assert size == sample.img_shape
        assert sample.ori_shape == (128, 128)
        # The label keeps the original size, as in the test pipeline: the
        # TTA model resizes its averaged prediction to it.
        gt = sample.gt_sem_seg.data
        assert gt.shape == label.shape
        assert (gt == label).all()
        seen.add((size, sample.flip))
        if size == (128, 128):
            expect = img.flip(-1) if sample.flip else img
            assert (inputs == expect).all()
        if sample.flip:
            assert sample.flip_direction == 'horizontal'
    assert seen == {(s, f)
                    for s in [(96, 96), (128, 128), (160, 160)]
                    for f in (False, True)}
    # Labels are the demo's class indices and the ignore index.
    values = set(np.unique(label.numpy()).tolist())
    assert values <= set(
        range(len(plain['data_samples'].metainfo.get('classes',
                                                     range(255))))) | {255}
