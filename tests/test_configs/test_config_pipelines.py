"""The paper configs test at the official scales.

The official SegViT configs run mmseg 0.24, whose test resize differs from
mmseg 1.x's. Each test here runs a config's real test (and TTA) pipeline
through mmseg's transform registry on a synthetic image and compares the size
it produces with the size mmseg 0.24's rule gives for the official settings
(computed below from that rule, not written down).
"""
import inspect
import os.path as osp

import cv2
import numpy as np
import pytest
from fixtures import REPO
from mmengine.config import Config
from mmengine.dataset import Compose
from mmseg.registry import DATASETS

SEGVIT = osp.join(REPO, 'configs', 'segvit')
# config stem -> official test settings: MultiScaleFlipAug's img_scale and
# Resize(keep_ratio=True, min_size=...) (segvit_vit-l_jax_*.py and
# configs/_base_/datasets/*.py in zbwxp/SegVit)
OFFICIAL = {
    'segvit_vit-b16_8xb2-160k_ade20k-512x512': ((2048, 512), None),
    'segvit_vit-l16_8xb2-160k_ade20k-640x640': ((2048, 640), None),
    'segvit_vit-l16_8xb2-80k_coco-stuff10k-512x512': ((2048, 512), 512),
    'segvit_vit-l16_4xb4-80k_pascal-context-480x480': ((520, 520), 480),
    'segvit_vit-l16_4xb4-80k_pascal-context-59-480x480': ((520, 520), 480),
}
# mmseg 0.24's tools/test.py --aug-test
AUG_TEST_RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
# (h, w) of test images: PASCAL VOC's usual landscape and portrait, a wide
# one (3:1, beyond mmseg 1.x's (520, 520) and below (2048, 512) caps) and
# a very wide one (7:1, beyond (2048, 512)'s 4:1).
SIZES = [(375, 500), (500, 375), (333, 1000), (100, 700)]


def official_size(h, w, img_scale, min_size=None, ratio=None):
    """(h, w) after mmseg 0.24's MultiScaleFlipAug + Resize(keep_ratio).

    MultiScaleFlipAug scales img_scale by ``ratio`` (int() of each side)
    when given. Resize with ``min_size`` sets the short side to
    ``max(min(scale), min_size)`` and the long side in proportion
    (``new_short * long / short``); then mmcv 1.x's ``imrescale`` scales
    by ``min(max(scale) / long, min(scale) / short)`` and rounds each
    side with ``int(x * factor + 0.5)``.
    """
    scale = img_scale
    if ratio is not None:
        scale = (int(img_scale[0] * ratio), int(img_scale[1] * ratio))
    if min_size is not None:
        new_short = min_size if min(scale) < min_size else min(scale)
        if h > w:
            scale = (new_short * h / w, new_short)
        else:
            scale = (new_short, new_short * w / h)
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def test_the_rule_gives_the_sizes_the_issue_names():
    """375x500 -> 520x693 on PASCAL-Context, mmseg 1.x gives 390x520."""
    assert official_size(375, 500, (520, 520), 480) == (520, 693)
    assert official_size(375, 500, (520, 520), 480, ratio=0.5) == (480, 640)
    assert official_size(375, 500, (520, 520)) == (390, 520)


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """A random image and an all-zero label PNG per size."""
    root = tmp_path_factory.mktemp('pipeline_images')
    rng = np.random.default_rng(0)
    files = {}
    for h, w in SIZES:
        img, label = root / f'{h}x{w}.jpg', root / f'{h}x{w}.png'
        cv2.imwrite(str(img), rng.integers(0, 255, (h, w, 3), np.uint8))
        cv2.imwrite(str(label), np.ones((h, w), np.uint8))
        files[(h, w)] = (str(img), str(label))
    return files


def _sample(files, size, cfg):
    """What the config's dataset hands its pipeline for one image."""
    dataset = cfg.test_dataloader.dataset
    reduce_zero_label = dataset.get('reduce_zero_label')
    for cls in DATASETS.get(dataset.type).__mro__:
        if reduce_zero_label is not None:
            break
        param = inspect.signature(
            cls.__init__).parameters.get('reduce_zero_label')
        reduce_zero_label = param and param.default
    img, label = files[size]
    return dict(
        img_path=img,
        seg_map_path=label,
        reduce_zero_label=reduce_zero_label,
        seg_fields=[])


def _load(stem):
    return Config.fromfile(osp.join(SEGVIT, stem + '.py'))


@pytest.mark.parametrize('stem', sorted(OFFICIAL))
def test_test_pipeline_resizes_as_the_official_one(stem, images):
    cfg = _load(stem)
    img_scale, min_size = OFFICIAL[stem]
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert cfg.val_dataloader.dataset.pipeline == pipeline
    transform = Compose(pipeline)
    for h, w in SIZES:
        packed = transform(_sample(images, (h, w), cfg))
        assert tuple(packed['inputs'].shape[-2:]) == official_size(
            h, w, img_scale, min_size), (h, w)
        sample = packed['data_samples']
        assert sample.ori_shape == (h, w)
        # the label stays at the image size: metrics are at full size
        assert tuple(sample.gt_sem_seg.shape) == (h, w)


@pytest.mark.parametrize('stem', sorted(OFFICIAL))
def test_tta_pipeline_uses_the_official_aug_test_scales(stem, images):
    cfg = _load(stem)
    img_scale, min_size = OFFICIAL[stem]
    transform = Compose(cfg.tta_pipeline)
    for h, w in SIZES[:2]:
        packed = transform(_sample(images, (h, w), cfg))
        shapes = [tuple(x.shape[-2:]) for x in packed['inputs']]
        flips = [s.flip for s in packed['data_samples']]
        expected = [
            official_size(h, w, img_scale, min_size, ratio=r)
            for r in AUG_TEST_RATIOS for _ in range(2)
        ]
        assert shapes == expected, (h, w)
        assert flips == [False, True] * len(AUG_TEST_RATIOS)


def test_pascal_context_tests_at_the_official_scale_not_mmseg_1x_one(images):
    """The issue's case, literally: 375x500 -> 520x693."""
    cfg = _load('segvit_vit-l16_4xb4-80k_pascal-context-480x480')
    packed = Compose(cfg.test_dataloader.dataset.pipeline)(
        _sample(images, (375, 500), cfg))
    assert tuple(packed['inputs'].shape[-2:]) == (520, 693)
