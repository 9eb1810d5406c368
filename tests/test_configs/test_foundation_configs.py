"""The configs on timm ViTs (DINOv2, DINOv3, BEiT-v2, EVA-02, the timm
demo): each keeps its published recipe, builds at reduced depth and width
through ``--cfg-options``-style overrides, trains one step with the
optimizer its config builds (layer-wise lr decay) and runs whole and slide
inference."""
import glob
import os.path as osp
import re

import pytest
import torch
from fixtures import REPO, TIMM_CONFIG_NAME, data_samples, predict_image
from mmengine.config import Config, ConfigDict
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS

SEGVIT = osp.join(REPO, 'configs', 'segvit')
IMAGENET = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
# stem: timm model, weights file, lr, layer decay, iterations, frozen
RECIPES = {
    'segvit_dinov2-l14_8xb2-80k_ade20k-512x512':
    ('vit_large_patch14_dinov2', 'dinov2_vitl14_pretrain.pth', 4e-5, 0.9,
     80000, False),
    'segvit_dinov3-l16_8xb2-80k_ade20k-512x512':
    ('vit_large_patch16_dinov3',
     'dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth', 4e-5, 0.9, 80000, False),
    'segvit_dinov3-l16-frozen_8xb2-40k_ade20k-512x512':
    ('vit_large_patch16_dinov3',
     'dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth', 1e-3, 1.0, 40000, True),
    'segvit_beitv2-l16_8xb2-160k_ade20k-512x512':
    ('beitv2_large_patch16_224', 'beitv2_large_patch16_224_pt1k_ft21k.pth',
     3e-5, 0.9, 160000, False),
    'segvit_eva02-l14_8xb2-80k_ade20k-512x512':
    ('eva02_large_patch14_224', 'eva02_L_pt_m38m_p14.pt', 4e-5, 0.9, 80000,
     False),
}
DEMO = 'segvit_timm-vit-t8_1xb8-500iter_shapes-128x128'
CONFIGS = sorted(RECIPES) + [DEMO]


def _path(stem):
    return osp.join(SEGVIT, stem + '.py')


def _uses_timmvit(path):
    """Whether a config or one of its local bases builds TimmViT (read as
    text: loading every config with its ``mmseg::`` bases is slow)."""
    text = open(path).read()
    bases = re.findall(r"'(\.{1,2}/[^']+\.py)'", text)
    return "type='TimmViT'" in text or any(
        _uses_timmvit(osp.normpath(osp.join(osp.dirname(path), b)))
        for b in bases)


def test_every_config_on_timmvit_is_tested_here():
    on_timm = set()
    for path in glob.glob(osp.join(SEGVIT, '*.py')):
        stem = osp.splitext(osp.basename(path))[0]
        if _uses_timmvit(path):
            on_timm.add(stem)
        named = bool(TIMM_CONFIG_NAME.match(stem))
        assert _uses_timmvit(path) == named, stem
    assert on_timm == set(CONFIGS)
    # the text check agrees with the loaded config
    for stem in (DEMO, 'segvit_vit-t8_1xb8-500iter_shapes-128x128'):
        cfg = Config.fromfile(_path(stem), import_custom_modules=False)
        assert (cfg.model.backbone.type == 'TimmViT') == (stem == DEMO)


@pytest.mark.parametrize('stem', sorted(RECIPES))
def test_config_keeps_its_recipe(stem):
    name, weights, lr, decay, iters, frozen = RECIPES[stem]
    cfg = Config.fromfile(_path(stem))
    backbone = cfg.model.backbone
    assert backbone.model_name == name
    assert backbone.frozen is frozen
    assert backbone.img_size == cfg.crop_size == (512, 512)
    assert tuple(backbone.out_indices) == (7, 15, 23)  # SegViT's ViT-L
    assert backbone.init_cfg == dict(
        type='Pretrained', checkpoint=f'pretrain/{weights}')
    assert backbone.drop_path_rate == (0.0 if frozen else 0.2)
    assert (cfg.model.data_preprocessor.mean,
            cfg.model.data_preprocessor.std) == IMAGENET
    head = cfg.model.decode_head
    assert (head.type, head.in_channels, head.embed_dims,
            head.num_classes) == ('ATMHead', 1024, 512, 150)
    assert cfg.model.test_cfg == dict(
        mode='slide', crop_size=(512, 512), stride=(341, 341))
    optim = cfg.optim_wrapper
    assert optim.constructor == 'ViTLayerDecayOptimWrapperConstructor'
    assert optim.optimizer.type == 'AdamW'
    assert optim.optimizer.lr == lr
    assert optim.paramwise_cfg.layer_decay_rate == decay
    assert optim.clip_grad.max_norm == 35
    assert cfg.train_cfg.max_iters == iters
    assert cfg.param_scheduler[0].end == 1500
    assert cfg.param_scheduler[-1].end == iters
    if frozen:  # the DINOv3 linear-probe schedule and optimiser
        assert cfg.param_scheduler[-1].type == 'CosineAnnealingLR'
        assert optim.optimizer.weight_decay == 1e-3
    else:
        assert cfg.param_scheduler[-1].type == 'PolyLR'
        assert optim.optimizer.weight_decay == 0.05
        assert optim.paramwise_cfg.custom_keys == {
            'decode_head': dict(lr_mult=10.0)
        }
    gpus, batch = re.search(r'_(\d+)xb(\d+)-', stem).groups()
    assert (int(gpus), int(batch)) == (8, cfg.train_dataloader.batch_size)


def _tiny(stem):
    """The config's model at 3 blocks of 32 dims, as ``--cfg-options`` would
    set it; returns (model cfg, optim_wrapper cfg, patch)."""
    cfg = Config.fromfile(_path(stem))
    patch = 8 if stem == DEMO else int(re.search(r'-[lt](\d+)', stem)[1])
    size = 4 * patch
    cfg.merge_from_dict({
        'model.backbone.model_kwargs':
        dict(
            cfg.model.backbone.get('model_kwargs') or {},
            depth=3,
            embed_dim=32,
            num_heads=2),
        'model.backbone.out_indices': (0, 1, 2),
        'model.backbone.img_size': (size, size),
        'model.backbone.drop_path_rate':
        0.0,  # every branch gets a gradient
        'model.backbone.init_cfg':
        None,
        'model.data_preprocessor.size': (size, size),
        'model.decode_head.in_channels':
        32,
        'model.decode_head.embed_dims':
        32,
        'model.decode_head.num_heads':
        4,
    })
    if cfg.model.data_preprocessor.get('test_cfg'):
        cfg.model.data_preprocessor.test_cfg.size = (size, size)
    return cfg.model, cfg.optim_wrapper, patch


@pytest.mark.parametrize('stem', CONFIGS)
def test_config_trains_one_step_and_infers(stem):
    model_cfg, optim_cfg, patch = _tiny(stem)
    model = MODELS.build(model_cfg)
    model.init_weights()
    optim = build_optim_wrapper(model, optim_cfg)
    frozen = model_cfg.backbone.get('frozen', False)
    in_optim = {
        id(p)
        for g in optim.optimizer.param_groups for p in g['params']
    }
    trained = {n for n, p in model.named_parameters() if id(p) in in_optim}
    assert any(n.startswith('backbone.') for n in trained) != frozen

    num_classes = model_cfg.decode_head.num_classes
    size = 4 * patch
    imgs = torch.randint(0, 255, (2, 3, size, size)).float()
    labels = torch.randint(0, num_classes, (2, size, size))
    labels[:, :2] = 255
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    log = model.train_step(
        dict(inputs=list(imgs), data_samples=data_samples(labels)), optim)
    assert torch.isfinite(log['loss'])
    for name, param in model.named_parameters():
        moved = not torch.equal(param, before[name])
        assert moved == (name in trained), name
    if frozen:
        assert not model.backbone.vit.training  # stays in eval mode

    model.eval()
    fixed_window = 'beitv2' in stem  # BEiT's relative tables: img_size only
    if not fixed_window:
        # whole image, not square, not a multiple of the patch
        model.test_cfg = ConfigDict(mode='whole')
        img = torch.randint(0, 255, (3, size + 3, size + 2 * patch)).float()
        out = predict_image(model, img)
        assert out.seg_logits.data.shape == (num_classes, *img.shape[-2:])
        assert torch.isfinite(out.seg_logits.data).all()
    model.test_cfg = ConfigDict(
        mode='slide', crop_size=(size, size), stride=(3 * patch, 3 * patch))
    img = torch.randint(0, 255, (3, size + 2 * patch, size + 3 * patch))
    out = predict_image(model, img.float())
    assert out.seg_logits.data.shape == (num_classes, *img.shape[-2:])
    pred = out.pred_sem_seg.data
    assert 0 <= pred.min() and pred.max() < num_classes


def test_beit_refuses_whole_inference_off_its_window():
    model_cfg, _, patch = _tiny('segvit_beitv2-l16_8xb2-160k_ade20k-512x512')
    model = MODELS.build(model_cfg).eval()
    model.test_cfg = ConfigDict(mode='whole')
    img = torch.randint(0, 255, (3, 4 * patch, 6 * patch)).float()
    with pytest.raises(ValueError, match='slide'):
        predict_image(model, img)


def test_beit_slide_inference_of_images_smaller_than_its_window():
    """An elongated image the test pipeline leaves thinner than the crop:

    the config pads it to the crop (data_preprocessor.test_cfg) and the
    prediction has the image's size; without the padding the refusal names that
    setting (not the slide mode already in use).
    """
    model_cfg, _, patch = _tiny('segvit_beitv2-l16_8xb2-160k_ade20k-512x512')
    size = 4 * patch
    assert model_cfg.data_preprocessor.test_cfg.size == (size, size)
    model = MODELS.build(model_cfg).eval()
    model.test_cfg = ConfigDict(
        mode='slide', crop_size=(size, size), stride=(3 * patch, 3 * patch))
    img = torch.randint(0, 255, (3, size // 2 + 3, 5 * size)).float()
    out = predict_image(model, img)
    assert out.seg_logits.data.shape[-2:] == img.shape[-2:]
    assert torch.isfinite(out.seg_logits.data).all()
    model_cfg.data_preprocessor.pop('test_cfg')
    model = MODELS.build(model_cfg).eval()
    model.test_cfg = ConfigDict(
        mode='slide', crop_size=(size, size), stride=(3 * patch, 3 * patch))
    with pytest.raises(
            ValueError,
            match=r'smaller than that.*data_preprocessor.test_cfg'):
        predict_image(model, img)
