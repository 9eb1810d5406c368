"""Very elongated images go through every shipped test and --tta pipeline and
are predicted at their own size."""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from fixtures import DEMO_CONFIG, REPO
from mmcv.transforms import Resize
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmseg.registry import MODELS

from mmseg_segvit.datasets import ClampedResize

ALL = sorted(
    glob.glob(
        osp.join(REPO, 'configs', 'segvit', '**', '*.py'), recursive=True))
ADE_CONFIG = osp.join(REPO, 'configs', 'segvit',
                      'segvit_vit-b16_8xb2-160k_ade20k-512x512.py')
ELONGATED = [(1, 2000), (3000, 2), (2, 3000), (5000, 1)]


def _stem(path):
    return osp.splitext(osp.basename(path))[0]


@pytest.fixture(scope='module')
def elongated(tmp_path_factory):
    root = tmp_path_factory.mktemp('elongated')
    paths = {}
    for h, w in ELONGATED:
        paths[h, w] = str(root / f'{h}x{w}.png')
        cv2.imwrite(paths[h, w], np.full((h, w, 3), 120, np.uint8))
    return paths


@pytest.mark.parametrize('kwargs', [
    dict(scale=(2048, 512), keep_ratio=True),
    dict(scale_factor=0.75, keep_ratio=True),
    dict(scale=(128, 128), keep_ratio=False),
])
def test_ordinary_images_are_resized_as_resize_does(kwargs):
    img = np.random.RandomState(0).randint(0, 255, (300, 517, 3), np.uint8)
    want = Resize(**kwargs)(dict(img=img.copy()))
    got = ClampedResize(**kwargs)(dict(img=img.copy()))
    assert got['img_shape'] == want['img_shape']
    assert np.array_equal(got['img'], want['img'])
    assert got['scale_factor'] == want['scale_factor']


@pytest.mark.parametrize('kwargs', [
    dict(scale=(128, 128), keep_ratio=True),
    dict(scale_factor=0.25, keep_ratio=True),
])
def test_no_side_falls_below_min_size(kwargs):
    img = np.zeros((5000, 1, 3), np.uint8)
    with pytest.raises(Exception):  # mmcv's own Resize: OpenCV stops
        Resize(**kwargs)(dict(img=img.copy()))
    out = ClampedResize(**kwargs)(dict(img=img.copy()))
    assert min(out['img_shape']) == 2
    assert max(out['img_shape']) == (128 if 'scale' in kwargs else 1250)


def _without_labels(steps):
    return [t for t in steps if t['type'] != 'LoadAnnotations']


@pytest.mark.parametrize('path', ALL, ids=_stem)
def test_every_shipped_test_and_tta_pipeline_takes_elongated_images(
        path, elongated):
    cfg = Config.fromfile(path, import_custom_modules=False)
    tta = [
        cfg.tta_pipeline[0],
        dict(
            cfg.tta_pipeline[1],
            transforms=[
                s for s in cfg.tta_pipeline[1].transforms
                if s[0]['type'] != 'LoadAnnotations'
            ])
    ]
    for image in elongated.values():
        plain = Compose(_without_labels(cfg.test_pipeline))(
            dict(img_path=image))
        assert min(plain['inputs'].shape[1:]) >= 2
        views = Compose(tta)(dict(img_path=image))
        assert all(min(v.shape[1:]) >= 2 for v in views['inputs'])


@pytest.mark.parametrize(
    'path', [DEMO_CONFIG, ADE_CONFIG], ids=['whole', 'slide'])
def test_elongated_images_are_predicted_at_their_size(path, elongated):
    cfg = Config.fromfile(path, import_custom_modules=False)
    cfg.model.pretrained = None
    cfg.model.backbone.update(
        embed_dims=32, num_layers=3, num_heads=2, out_indices=[0, 1, 2])
    cfg.model.decode_head.update(
        in_channels=32, embed_dims=32, num_heads=4, num_layers=1)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    steps = Compose(_without_labels(cfg.test_pipeline))
    for (h, w), image in elongated.items():
        data = pseudo_collate([steps(dict(img_path=image))])
        with torch.no_grad():
            sample = model.test_step(data)[0]
        assert tuple(sample.pred_sem_seg.shape) == (h, w)


@pytest.mark.parametrize('path', ALL, ids=_stem)
def test_every_shipped_train_pipeline_takes_elongated_samples(path, tmp_path):
    cfg = Config.fromfile(path, import_custom_modules=False)
    steps = Compose(cfg.train_dataloader.dataset.pipeline)
    reduce_zero_label = any(
        t.get('reduce_zero_label') for t in cfg.train_pipeline
        if t['type'] == 'LoadAnnotations')
    for h, w in [(2, 3000), (3000, 2), (3, 4000)]:
        image, label = str(tmp_path / 'img.png'), str(tmp_path / 'ann.png')
        cv2.imwrite(image, np.full((h, w, 3), 120, np.uint8))
        cv2.imwrite(label, np.ones((h, w), np.uint8))
        out = steps(
            dict(
                img_path=image,
                seg_map_path=label,
                reduce_zero_label=reduce_zero_label,
                seg_fields=[],
                label_map=None))
        assert min(out['inputs'].shape[1:]) >= 2
        assert out['data_samples'].gt_sem_seg.shape == \
            tuple(out['inputs'].shape[1:])
