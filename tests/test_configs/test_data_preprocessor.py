"""The preprocessing a tool or wrapper takes from a config is the model's.

MMSeg's `tools/test.py --tta` builds `tta_model` with the config's top-level
`data_preprocessor` (mmengine's Runner passes it on, and `BaseTTAModel` puts it
into the wrapped model), so a config whose `model.data_preprocessor` differs
from it normalises every image of a `--tta` run otherwise than the plain test.
"""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from fixtures import DEMO_CONFIG, REPO
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmseg.registry import MODELS

ALL = sorted(
    glob.glob(
        osp.join(REPO, 'configs', 'segvit', '**', '*.py'), recursive=True))


def _stem(path):
    return osp.splitext(osp.basename(path))[0]


def _settings(preprocessor) -> dict:
    """The settings of a preprocessor config, without the registry scope."""
    return {k: v for k, v in (preprocessor or {}).items() if k != '_scope_'}


@pytest.mark.parametrize('path', ALL, ids=_stem)
def test_top_level_data_preprocessor_is_the_models(path):
    cfg = Config.fromfile(path, import_custom_modules=False)
    model = _settings(cfg.model.get('data_preprocessor'))
    assert model, f'{path}: the model has no data_preprocessor'
    assert _settings(cfg.get('data_preprocessor')) == model, (
        f'{path}: the top-level data_preprocessor (taken by --tta) differs '
        'from model.data_preprocessor')


def _tiny_demo_cfg(tta_views):
    cfg = Config.fromfile(DEMO_CONFIG, import_custom_modules=False)
    cfg.model.backbone.update(
        embed_dims=32, num_layers=3, num_heads=2, out_indices=[0, 1, 2])
    cfg.model.decode_head.update(
        in_channels=32, embed_dims=32, num_heads=4, num_layers=1)
    cfg.tta_pipeline[1].transforms = tta_views
    return cfg


def _image(tmp_path) -> str:
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (128, 128, 3), dtype=np.uint8)
    img[32:96, 40:100] = (200, 30, 30)
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, img)
    return path


def _tta_model(cfg, module):
    """The model `tools/test.py --tta` runs (Runner: the config's top-level
    data_preprocessor goes to the TTA model, which puts it in the module)."""
    tta = MODELS.build(
        dict(
            cfg.tta_model,
            module=cfg.model,
            data_preprocessor=cfg.get('data_preprocessor')))
    tta.module.load_state_dict(module.state_dict())
    return tta.eval()


def test_tta_at_one_scale_without_flip_equals_the_plain_test(tmp_path):
    one_view = [[dict(type='Resize', scale_factor=1.0, keep_ratio=True)],
                [dict(type='RandomFlip', prob=0., direction='horizontal')],
                [dict(type='PackSegInputs')]]
    cfg = _tiny_demo_cfg(one_view)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    tta = _tta_model(cfg, model)
    assert tta.module.data_preprocessor.mean.flatten().tolist() == \
        model.data_preprocessor.mean.flatten().tolist()

    path = _image(tmp_path)
    plain_steps = [t for t in cfg.test_pipeline if t.type != 'LoadAnnotations']
    plain = pseudo_collate([Compose(plain_steps)(dict(img_path=path))])
    views = pseudo_collate([Compose(cfg.tta_pipeline)(dict(img_path=path))])
    with torch.no_grad():
        want = model.test_step(plain)[0]
        got = tta.test_step(views)[0]
    assert got.pred_sem_seg.data.shape == want.pred_sem_seg.data.shape
    assert torch.equal(got.pred_sem_seg.data, want.pred_sem_seg.data)
    # And the views are normalised as the plain test normalises them.
    with torch.no_grad():
        a = model.data_preprocessor(plain)['inputs']
        b = tta.module.data_preprocessor(
            dict(
                inputs=views['inputs'][0],
                data_samples=views['data_samples'][0]))['inputs']
    torch.testing.assert_close(a, b)
