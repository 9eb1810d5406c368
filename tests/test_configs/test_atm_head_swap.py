"""Drop-in configs: stock MMSeg configs with ATMHead as the decode head.

Each real config is loaded (stock ``mmseg::`` base included); only the widths
and depths are shrunk for speed. The model builds, trains one step with its
auxiliary head and infers with the stock test mode.
"""
import glob
import importlib.util
import os.path as osp

import pytest
import torch
from fixtures import REPO, batch_losses, data_samples
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmseg.registry import MODELS

SWAP_DIR = osp.join(REPO, 'configs', 'segvit', 'atm_head_swap')
CONFIGS = sorted(glob.glob(osp.join(SWAP_DIR, '*.py')))
SIZE = 64  # BEiT and MAE need the input size they were built for

# The stock config each drop-in inherits.
STOCK = {
    'atm_vit-b16_mln_8xb2-160k_ade20k-512x512':
    'vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py',
    'atm_beit-base_8xb2-160k_ade20k-640x640':
    'beit/beit-base_upernet_8xb2-160k_ade20k-640x640.py',
    'atm_mae-base_8xb2-amp-160k_ade20k-512x512':
    'mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py',
    'atm_deit-s16_8xb2-160k_ade20k-512x512':
    'vit/vit_deit-s16_upernet_8xb2-160k_ade20k-512x512.py',
    'atm_swin-tiny-patch4-window7-in1k-pre_8xb2-160k_ade20k-512x512':
    'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512'
    '.py',
    'atm_convnext-tiny_8xb2-amp-160k_ade20k-512x512':
    'convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py',
    'atm_convnext-tiny-timm_8xb2-amp-160k_ade20k-512x512':
    'convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py',
    'atm_r50_4xb4-160k_ade20k-512x512':
    'upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
}

# What a drop-in changes in the stock model besides the decode head: it
# does not build the backbone / neck level that ATMHead does not read, so
# the auxiliary head's index into the outputs moves with it.
TRIMS = {
    'atm_vit-b16_mln_8xb2-160k_ade20k-512x512': {
        'backbone.out_indices': (5, 8, 11),
        'neck.in_channels': [768, 768, 768],
        'neck.scales': [2, 1, 0.5],
        'auxiliary_head.in_index': 2,
    },
    'atm_swin-tiny-patch4-window7-in1k-pre_8xb2-160k_ade20k-512x512': {
        'backbone.out_indices': (1, 2, 3),
        'auxiliary_head.in_index': 1,
    },
    'atm_convnext-tiny_8xb2-amp-160k_ade20k-512x512': {
        'backbone.out_indices': [1, 2, 3],
        'auxiliary_head.in_index': 1,
    },
}
# Feature2Pyramid cannot be built without its 1/4 level, which ATMHead does
# not read: these configs let DDP find the parameters without a gradient.
UNUSED = {
    'atm_beit-base_8xb2-160k_ade20k-640x640': 'neck.upsample_4x.',
    'atm_mae-base_8xb2-amp-160k_ade20k-512x512': 'neck.upsample_4x.',
}


def _stem(path):
    return osp.splitext(osp.basename(path))[0]


def _needs(stem):
    """Packages a config needs beyond this package's requirements."""
    return ['mmpretrain'] if stem == (
        'atm_convnext-tiny_8xb2-amp-160k_ade20k-512x512') else []


def test_every_requested_backbone_has_a_drop_in_config():
    assert {_stem(p) for p in CONFIGS} == set(STOCK)


@pytest.mark.parametrize('path', CONFIGS, ids=_stem)
def test_drop_in_inherits_the_stock_config(path):
    text = open(path).read()
    assert f"'mmseg::{STOCK[_stem(path)]}'" in text.replace("'\n    '", '')
    cfg = Config.fromfile(path, import_custom_modules=False)
    stock = Config.fromfile(
        osp.join(_mmseg_configs(), STOCK[_stem(path)]),
        import_custom_modules=False)
    head = cfg.model.decode_head
    assert head.type == 'ATMHead'
    assert head.num_classes == stock.model.decode_head.num_classes == 150
    assert 'mmseg_segvit' in cfg.custom_imports['imports']
    # Only the decode head, the unread level (TRIMS) and for timm's ConvNeXt
    # the backbone and the optimiser differ from the stock recipe.
    trims = TRIMS.get(_stem(path), {})
    for key, value in trims.items():
        assert _plain(cfg, 'model.' + key) == _plain(value, ''), key
        *parents, leaf = key.split('.')
        _get(stock.model, '.'.join(parents))[leaf] = value
    same = [
        'train_dataloader', 'test_dataloader', 'param_scheduler',
        'model.auxiliary_head', 'model.neck', 'model.test_cfg'
    ]
    if 'timm' not in path:
        same += ['model.backbone', 'optim_wrapper']
    for key in same:
        assert _stock_resize(_plain(cfg, key)) == _plain(stock, key), key
    # The test pipelines are the stock ones with ClampedResize, the
    # evaluator is IoUMetric that names the classes absent from the labels.
    assert [t['type'] for t in cfg.test_dataloader.dataset.pipeline] == [
        'LoadImageFromFile', 'ClampedResize', 'LoadAnnotations',
        'PackSegInputs'
    ]
    assert cfg.test_evaluator.type == cfg.val_evaluator.type == \
        'CheckedIoUMetric'
    assert [h['type'] for h in cfg.custom_hooks] == ['DatasetCheckHook']
    assert [
        t.get('resize_type') for t in cfg.train_dataloader.dataset.pipeline
        if t['type'] == 'RandomResize'
    ] == ['ClampedResize']


@pytest.mark.parametrize('path', CONFIGS, ids=_stem)
def test_drop_in_reads_the_levels_the_stock_heads_read(path):
    """ATMHead reads the last three stock levels and the auxiliary head its
    stock level, whether or not the drop-in builds the first level."""
    cfg = Config.fromfile(path, import_custom_modules=False)
    stock = Config.fromfile(
        osp.join(_mmseg_configs(), STOCK[_stem(path)]),
        import_custom_modules=False)
    levels, stock_levels = _levels(cfg.model), _levels(stock.model)
    assert [levels[i] for i in cfg.model.decode_head.in_index] == \
        stock_levels[1:]
    assert levels[cfg.model.auxiliary_head.in_index] == \
        stock_levels[stock.model.auxiliary_head.in_index]
    # Only the configs that cannot drop the unread level let DDP look for
    # parameters without a gradient (which costs a graph walk per step).
    wrapper = cfg.get('model_wrapper_cfg') or {}
    assert wrapper.get('find_unused_parameters', False) == (
        _stem(path) in UNUSED)


def _levels(model):
    """One entry per backbone / neck output: (backbone output, neck scale)."""
    outs = model.backbone.get('out_indices', (0, 1, 2, 3))
    neck = model.get('neck')
    if not neck:
        return [(i, None) for i in outs]
    scales = neck.get('scales', neck.get('rescales'))
    assert len(scales) == len(outs)
    return list(zip(outs, scales))


def _get(cfg, key):
    for part in key.split('.') if key else []:
        cfg = cfg.get(part)
    return cfg


def _stock_resize(value):
    """``value`` with mmcv's ``Resize`` where it says ``ClampedResize`` (which
    resizes every image mmcv's can the same way)."""
    if isinstance(value, dict):
        return {
            k: ('Resize'
                if k == 'type' and v == 'ClampedResize' else _stock_resize(v))
            for k, v in value.items()
            if (k, v) != ('resize_type', 'ClampedResize')
        }
    if isinstance(value, list):
        return [_stock_resize(v) for v in value]
    return value


def _plain(cfg, key):
    """``cfg[key]`` without the ``_scope_`` marks of ``mmseg::`` bases."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != '_scope_'}
        if isinstance(value, (list, tuple)):
            return [strip(v) for v in value]
        return value

    return strip(_get(cfg, key))


def _mmseg_configs():
    import mmseg
    return osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs')


def _tiny(cfg):
    """Shrink a loaded drop-in config's model; keep its structure."""
    model = cfg.model
    model.pretrained = None
    model.data_preprocessor.size = (SIZE, SIZE)
    backbone = model.backbone
    backbone.pop('init_cfg', None)
    kind = backbone.type
    # As many outputs as the config builds: the last ones of a 4-stage net.
    outs = list(range(4))[-len(backbone.get('out_indices', range(4))):]
    if kind in ('VisionTransformer', 'BEiT', 'MAE'):
        backbone.update(
            img_size=(SIZE, SIZE),
            embed_dims=32,
            num_layers=4,
            num_heads=2,
            out_indices=tuple(outs),
            drop_path_rate=0.0)
        chans = [32] * 4
        neck = model.get('neck')
        if neck and neck.type == 'MultiLevelNeck':
            neck.update(in_channels=[32] * len(outs), out_channels=32)
        elif neck:
            neck.update(embed_dim=32)
    elif kind == 'SwinTransformer':
        chans = [16, 32, 64, 128]
        backbone.update(
            embed_dims=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 2, 2, 4],
            drop_path_rate=0.0)
    elif kind == 'mmpretrain.ConvNeXt':
        chans = [16, 32, 64, 128]
        backbone.update(
            arch=dict(depths=[1, 1, 1, 1], channels=chans), drop_path_rate=0.0)
    elif kind == 'TIMMBackbone':
        chans = [16, 32, 64, 128]
        backbone.update(depths=(1, 1, 1, 1), dims=chans, drop_path_rate=0.0)
    elif kind == 'ResNetV1c':
        chans = [32, 64, 128, 256]
        backbone.update(depth=18, stem_channels=16, base_channels=32)
    else:
        raise AssertionError(f'no tiny setting for {kind}')
    chans = [chans[i] for i in outs]  # channels per output
    head = model.decode_head
    head.update(
        in_channels=[chans[i] for i in head.in_index],
        embed_dims=32,
        num_heads=4,
        num_layers=2)
    aux = model.auxiliary_head
    aux.update(in_channels=chans[aux.in_index], channels=16)
    if model.test_cfg.get('mode') == 'slide':
        model.test_cfg.update(crop_size=(SIZE, SIZE), stride=(48, 48))
    return model


@pytest.mark.parametrize('path', CONFIGS, ids=_stem)
def test_drop_in_trains_a_step_and_infers(path):
    for package in _needs(_stem(path)):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f'the stock config needs {package}')
    cfg = Config.fromfile(path)
    model = revert_sync_batchnorm(MODELS.build(_tiny(cfg)))
    model.init_weights()
    num_classes = 150
    imgs = torch.randint(0, 255, (2, 3, SIZE, SIZE)).float()
    labels = torch.randint(0, 6, (2, SIZE, SIZE)) * 25
    labels[:, :3] = 255
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = batch_losses(model, imgs, labels)
    assert {
        'decode.loss_ce', 'decode.loss_mask', 'decode.loss_dice', 'aux.loss_ce'
    } <= set(losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    head_grad = model.decode_head.q.weight.grad
    assert head_grad is not None and head_grad.abs().sum() > 0
    # DDP without find_unused_parameters needs a gradient for every
    # trainable parameter in every step.
    no_grad = sorted(name for name, p in model.named_parameters()
                     if p.requires_grad and p.grad is None)
    if _stem(path) in UNUSED:
        assert no_grad and all(
            n.startswith(UNUSED[_stem(path)]) for n in no_grad), no_grad
        assert cfg.model_wrapper_cfg.find_unused_parameters
    else:
        assert no_grad == [], no_grad
    optim.step()

    model.eval()
    width = SIZE + 32 if model.test_cfg.get('mode') == 'slide' else SIZE
    img = torch.randint(0, 255, (3, SIZE, width)).float()
    sample = data_samples(torch.zeros(1, SIZE, width, dtype=torch.long))
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=[img], data_samples=sample))
        out = model.predict(data['inputs'], data['data_samples'])[0]
    assert out.seg_logits.data.shape == (num_classes, SIZE, width)
    assert torch.isfinite(out.seg_logits.data).all()
    pred = out.pred_sem_seg.data
    assert pred.shape == (1, SIZE, width)
    assert 0 <= pred.min() and pred.max() < num_classes
