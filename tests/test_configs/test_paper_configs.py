"""Every shipped config loads, keeps the recipe, trains and infers.

The real config objects are loaded; only model sizes (and slide windows, to
keep inference small) are overridden for speed.
"""
import glob
import os.path as osp
import re

import pytest
import torch
from fixtures import (REPO, TIMM_CONFIG_NAME, batch_losses, data_samples,
                      meta_head, param_group_values)
from mmengine.config import Config, ConfigDict
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS
from mmseg.registry import MODELS

# the configs on mmseg's ViT and ShrunkViT (those on TimmViT:
# test_foundation_configs.py)
CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', 'segvit', '*.py'))
    if not TIMM_CONFIG_NAME.match(osp.basename(p)))
PAPER = {
    # config stem: (classes, crop, slide stride, params of the official model)
    'segvit_vit-b16_8xb2-160k_ade20k-512x512': (150, 512, 341, 108.74),
    'segvit_vit-l16_8xb2-160k_ade20k-640x640': (150, 640, 608, 344.31),
    'segvit_vit-l16_8xb2-80k_coco-stuff10k-512x512': (171, 512, 341, 343.74),
    'segvit_vit-l16_4xb4-80k_pascal-context-480x480': (60, 480, 320, 343.50),
    'segvit_vit-l16_4xb4-80k_pascal-context-59-480x480':
    (59, 480, 320, 343.49),
}
# The official configs' optimisation per dataset (segvit_vit-l_jax_*.py in
# zbwxp/SegVit): AdamW weight decay, poly power, iterations, images per GPU
# and images per iteration (the PASCAL-Context model was trained on 4 GPUs).
RECIPE = {
    'ade20k':
    dict(weight_decay=0.01, power=1.0, iters=160000, batch=2, total=16),
    'coco-stuff10k':
    dict(weight_decay=0.02, power=2.0, iters=80000, batch=2, total=16),
    'pascal-context':
    dict(weight_decay=0.03, power=1.0, iters=80000, batch=4, total=16),
}


def _recipe(path):
    return next(v for k, v in RECIPE.items() if k in osp.basename(path))


def _paper_or_shrunk(path):
    """The paper's configs, plain and Shrunk (ViT-B/L on its datasets)."""
    return _stem(path).replace('-shrunk', '') in PAPER


def _stem(path):
    return osp.splitext(osp.basename(path))[0]


def test_all_paper_configs_are_shipped():
    assert set(PAPER) <= {_stem(c) for c in CONFIGS}


@pytest.mark.parametrize('path', CONFIGS, ids=_stem)
def test_config_recipe(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports['imports'] == ['mmseg_segvit']
    head = cfg.model.decode_head
    assert head.type == 'ATMHead'
    assert head.loss_decode.type == 'ATMLoss'
    assert meta_head(head).q.num_embeddings == head.num_classes
    assert cfg.model.backbone.with_cls_token is False
    # the non-official QU locality prior is set by its own demo config only
    qu_cfg = cfg.model.backbone.get('qu_cfg') or {}
    assert (qu_cfg.get('locality_sigma') is None) != ('localqu' in path)
    # the demo ViTs carry a fixed sine-cosine position table (trained from
    # scratch); the paper's ViTs keep mmseg's learned one (pretrained)
    demo = 'shapes' in path
    assert cfg.model.backbone.get(
        'pos_embed_init',
        'trunc_normal') == ('sincos' if demo else 'trunc_normal')
    assert cfg.model.backbone.get('pos_embed_trainable', True) is not demo
    if _stem(path) not in PAPER:
        return
    classes, crop, stride, _ = PAPER[_stem(path)]
    assert head.num_classes == classes
    assert cfg.crop_size == (crop, crop)
    assert cfg.model.data_preprocessor.size == (crop, crop)
    assert cfg.model.data_preprocessor.mean == [127.5] * 3
    assert cfg.model.test_cfg == dict(
        mode='slide', crop_size=(crop, crop), stride=(stride, stride))
    assert cfg.model.pretrained.startswith('pretrain/vit_')
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW'
    assert optim.optimizer.lr == 2e-5
    assert optim.paramwise_cfg.custom_keys['head'] == dict(lr_mult=10.0)
    assert optim.paramwise_cfg.custom_keys['norm'] == dict(decay_mult=0.0)
    assert optim.clip_grad.max_norm == 35
    recipe = _recipe(path)
    assert optim.optimizer.weight_decay == recipe['weight_decay']
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.end) == ('LinearLR', 1500)
    assert (poly.type, poly.power, poly.end) == ('PolyLR', recipe['power'],
                                                 cfg.train_cfg.max_iters)
    assert cfg.train_cfg.max_iters == recipe['iters']
    assert cfg.train_dataloader.batch_size == recipe['batch']
    gpus, batch = re.search(r'_(\d+)xb(\d+)-', path).groups()
    assert int(batch) == recipe['batch']
    assert int(gpus) * int(batch) == recipe['total']


@pytest.mark.filterwarnings('ignore:Detected call of `scheduler.step')
@pytest.mark.parametrize(
    'path', [c for c in CONFIGS if _paper_or_shrunk(c)], ids=_stem)
def test_built_optimiser_and_schedule_follow_the_official_recipe(path):
    """Weight decay and poly power as the optimiser and scheduler built from
    the config apply them (tiny model, same parameter names)."""
    cfg = Config.fromfile(path)
    recipe = _recipe(path)
    model = MODELS.build(_tiny(cfg, (64, 64)))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = param_group_values(model, optim, 'weight_decay')
    wd = recipe['weight_decay']
    assert decay['backbone.layers.1.ffn.layers.1.weight'] == wd
    assert decay['decode_head.q.weight'] == wd
    assert decay['backbone.layers.1.ln1.weight'] == 0.0

    # The schedule, stepped as ParamSchedulerHook steps it, on one
    # parameter with lr 1: after the warm-up and half the poly phase the
    # lr is (1 - 1/2) ** power.
    one = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    warmup, poly = (
        PARAM_SCHEDULERS.build(s, default_args=dict(optimizer=one))
        for s in cfg.param_scheduler)
    assert warmup.end == poly.begin == 1500
    assert poly.end == cfg.train_cfg.max_iters == recipe['iters']
    for _ in range(poly.begin + (poly.end - poly.begin) // 2):
        warmup.step()
        poly.step()
    lr = one.param_groups[0]['lr']
    assert lr == pytest.approx(0.5**recipe['power'], rel=1e-3)


def _tiny(cfg, size):
    """Shrink the model of a loaded config; keep its structure."""
    model = cfg.model
    model.data_preprocessor.size = size
    model.pretrained = None
    backbone = model.backbone
    # the Shrunk demo starts from the plain demo's checkpoint
    backbone.pop('init_cfg', None)
    backbone.update(
        embed_dims=32,
        num_layers=3,
        num_heads=2,
        out_indices=[0, 1, 2],
        drop_path_rate=0.0)
    if backbone.type == 'ShrunkViT':
        backbone.update(
            qd_index=1,
            out_indices=[0, 2],
            qu_cfg=dict(embed_dims=32, num_heads=4))
    model.decode_head.update(in_channels=32, embed_dims=32, num_heads=4)
    if model.test_cfg.get('mode') == 'slide':
        patch = backbone.patch_size
        model.test_cfg.update(
            crop_size=(4 * patch, 4 * patch), stride=(3 * patch, 3 * patch))
    return model


@pytest.mark.parametrize('path', CONFIGS, ids=_stem)
def test_config_trains_one_step_and_infers(path):
    cfg = Config.fromfile(path)
    patch = cfg.model.backbone.patch_size
    h, w = 4 * patch, 6 * patch
    model = MODELS.build(_tiny(cfg, (h, w)))
    model.init_weights()
    num_classes = cfg.model.decode_head.num_classes
    imgs = torch.randint(0, 255, (2, 3, h, w)).float()
    labels = torch.randint(0, num_classes, (2, h, w))
    labels[:, :2] = 255
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss, _ = model.parse_losses(batch_losses(model, imgs, labels))
    assert torch.isfinite(loss)
    loss.backward()
    optim.step()

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=list(imgs[:1]), data_samples=data_samples(labels[:1])))
        out = model.predict(data['inputs'], data['data_samples'])
    pred = out[0].pred_sem_seg.data
    assert pred.shape == (1, h, w)
    assert 0 <= pred.min() and pred.max() < num_classes
    assert out[0].seg_logits.data.shape == (num_classes, h, w)


def _infer(model, img):
    sample = data_samples(torch.zeros(1, *img.shape[-2:], dtype=torch.long))
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=[img], data_samples=sample))
        return model.predict(data['inputs'], data['data_samples'])[0]


def test_whole_inference_on_a_non_square_image_off_the_patch_grid():
    """512x683 is not a multiple of 16: ViT pads, the head keeps the grid."""
    path = osp.join(REPO, 'configs', 'segvit',
                    'segvit_vit-b16_8xb2-160k_ade20k-512x512.py')
    cfg = Config.fromfile(path)
    model_cfg = _tiny(cfg, (512, 512))
    model_cfg.test_cfg = ConfigDict(mode='whole')
    model = MODELS.build(model_cfg).eval()
    model.init_weights()
    img = torch.randint(0, 255, (3, 512, 683)).float()
    out = _infer(model, img)
    assert out.seg_logits.data.shape == (150, 512, 683)
    assert out.pred_sem_seg.data.shape == (1, 512, 683)
    assert torch.isfinite(out.seg_logits.data).all()

    # Slide inference with one window covering the image gives the same.
    model.test_cfg = ConfigDict(
        mode='slide', crop_size=(512, 688), stride=(512, 688))
    slide = _infer(model, img)
    torch.testing.assert_close(
        slide.seg_logits.data, out.seg_logits.data, rtol=1e-4, atol=1e-5)
