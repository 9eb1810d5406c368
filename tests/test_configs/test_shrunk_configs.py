"""The Shrunk configs: the paper's settings on top of the plain configs.

Building, one train step and inference of every config (tiny sizes) are in
test_paper_configs.py, whose generic tests cover these configs too.
"""
import math
import os.path as osp

import pytest
import torch
from fixtures import REPO, meta_head, param_group_values
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS
from timm.layers import build_sincos2d_pos_embed

from mmseg_segvit.models.backbones import sincos_pos_embed

SEGVIT = osp.join(REPO, 'configs', 'segvit')
# shrunk config -> the plain config it shrinks
SHRUNK = {
    'segvit_vit-l16-shrunk_8xb2-160k_ade20k-640x640':
    'segvit_vit-l16_8xb2-160k_ade20k-640x640',
    'segvit_vit-l16-shrunk_8xb2-80k_coco-stuff10k-512x512':
    'segvit_vit-l16_8xb2-80k_coco-stuff10k-512x512',
    'segvit_vit-l16-shrunk_4xb4-80k_pascal-context-480x480':
    'segvit_vit-l16_4xb4-80k_pascal-context-480x480',
    'segvit_vit-l16-shrunk_4xb4-80k_pascal-context-59-480x480':
    'segvit_vit-l16_4xb4-80k_pascal-context-59-480x480',
}

DEMO = 'segvit_vit-t8_1xb8-500iter_shapes-128x128'
SHRUNK_DEMO = 'segvit_vit-t8-shrunk_1xb8-1500iter_shapes-128x128'


def _load(stem):
    return Config.fromfile(osp.join(SEGVIT, stem + '.py'))


@pytest.mark.parametrize('stem', sorted(SHRUNK))
def test_shrunk_config_has_the_paper_settings(stem):
    cfg, plain = _load(stem), _load(SHRUNK[stem])
    backbone, head = cfg.model.backbone, cfg.model.decode_head
    assert backbone.type == 'ShrunkViT'
    assert backbone.qd_index == 8
    assert backbone.out_indices == [7, 23]
    assert backbone.qu_cfg == dict(embed_dims=512, num_heads=16, num_layers=3)
    assert (backbone.embed_dims, backbone.num_layers) == (1024, 24)
    assert backbone.img_size == cfg.crop_size
    assert head.in_channels == head.embed_dims == 512
    assert head.use_stages == 1 and head.use_proj is False
    assert head.mask_mode == 'per_layer'
    assert meta_head(head).num_outputs == head.num_layers == 3
    keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
    assert keys['backbone.qu'] == dict(lr_mult=10.0)
    assert keys['head'] == dict(lr_mult=10.0)
    # everything but the model and the QU learning rate is the plain recipe
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'tta_pipeline', 'param_scheduler', 'train_cfg', 'crop_size'):
        assert cfg[key] == plain[key], key
    assert cfg.optim_wrapper.optimizer == plain.optim_wrapper.optimizer
    assert cfg.model.test_cfg == plain.model.test_cfg
    assert head.num_classes == plain.model.decode_head.num_classes
    for key in ('img_size', 'patch_size', 'drop_path_rate', 'norm_cfg',
                'with_cls_token', 'final_norm', 'interpolate_mode'):
        assert backbone[key] == plain.model.backbone[key], key


def test_shrunk_model_base_is_the_vit_l_base_with_qd_qu_and_the_head_input():
    """_base_/models/segvit_shrunk_vit-l16.py inherits the plain ViT-L/16 model
    base and changes only what the Shrunk structure changes."""
    models = osp.join(REPO, 'configs', '_base_', 'models')
    shrunk = Config.fromfile(osp.join(models, 'segvit_shrunk_vit-l16.py'))
    plain = Config.fromfile(osp.join(models, 'segvit_vit-l16.py'))
    # plus the variable holding the changes (shrunk_vit_l16)
    assert shrunk.keys() == plain.keys() | {'shrunk_vit_l16'}
    for key in plain:
        if key != 'model':
            assert shrunk[key] == plain[key], key

    def changed(part):
        new, old = shrunk.model[part], plain.model[part]
        assert set(old) <= set(new)
        return {k for k in new if new[k] != old.get(k)}

    assert changed('backbone') == {'type', 'qd_index', 'out_indices', 'qu_cfg'}
    assert changed('decode_head') == {
        'in_channels', 'use_stages', 'use_proj', 'mask_mode'
    }
    for key in plain.model:
        if key not in ('backbone', 'decode_head'):
            assert shrunk.model[key] == plain.model[key], key


def test_qu_trains_with_the_head_learning_rate():
    """QU is part of the official decode head: lr x10 like the head."""
    cfg = _load('segvit_vit-l16-shrunk_8xb2-160k_ade20k-640x640')
    model_cfg = cfg.model
    model_cfg.pretrained = None
    model_cfg.backbone.update(
        embed_dims=32,
        num_layers=3,
        num_heads=2,
        qd_index=1,
        out_indices=[0, 2],
        qu_cfg=dict(embed_dims=32, num_heads=4, num_layers=1))
    model_cfg.decode_head.update(in_channels=32, embed_dims=32, num_heads=4)
    model = MODELS.build(model_cfg)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = param_group_values(model, optim, 'lr')
    base = cfg.optim_wrapper.optimizer.lr
    assert lr['backbone.qu.q.weight'] == pytest.approx(10 * base)
    assert lr['backbone.qu.decoders.1.layers.0.linear1.weight'] == \
        pytest.approx(10 * base)
    assert lr['decode_head.q.weight'] == pytest.approx(10 * base)
    assert lr['backbone.layers.1.attn.attn.in_proj_weight'] == \
        pytest.approx(base)


def _plain_demo_checkpoint(path):
    """A checkpoint as `make demo`'s mim train writes it (random weights):

    the whole segmentor under ``state_dict``, with mmengine's meta and message
    hub (a HistoryBuffer, loaded through the weights_only allow-list).
    """
    from mmengine.logging import HistoryBuffer
    plain = MODELS.build(_load(DEMO).model)
    plain.init_weights()
    torch.save(
        dict(
            meta=dict(iter=500, seed=0),
            state_dict=plain.state_dict(),
            message_hub=dict(log_scalars=dict(
                loss=HistoryBuffer([1.0], [1])))), path)
    return plain


def test_shrunk_demo_starts_from_the_plain_demo_vit(tmp_path):
    """Every ViT weight (QD layer included) comes from the plain demo's
    checkpoint; QU and the head start fresh."""
    path = str(tmp_path / 'iter_500.pth')
    plain = _plain_demo_checkpoint(path)
    cfg = _load(SHRUNK_DEMO)
    init = cfg.model.backbone.init_cfg
    assert (init.type, init.prefix) == ('ViTPretrained', 'backbone.')
    # the official QU: no (non-official) locality prior
    assert cfg.model.backbone.qu_cfg.get('locality_sigma') is None
    assert init.checkpoint == 'work_dirs/segvit_demo/iter_500.pth'
    init.checkpoint = path  # what `make demo-shrunk` passes
    model = MODELS.build(cfg.model)
    model.init_weights()
    plain_vit = plain.backbone.state_dict()
    loaded = model.backbone.state_dict()
    vit_keys = [k for k in loaded if not k.startswith('qu.')]
    assert set(vit_keys) == set(plain_vit)
    for key in vit_keys:
        assert torch.equal(loaded[key], plain_vit[key]), key
    # the plain demo's fixed sine-cosine position table, still fixed
    assert torch.equal(loaded['pos_embed'], sincos_pos_embed((16, 16), 128))
    assert not model.backbone.pos_embed.requires_grad
    qd = 'layers.2.attn.attn.in_proj_weight'
    assert torch.equal(loaded[qd], plain_vit[qd])
    assert any(k.startswith('qu.') for k in loaded)

    # QU's queries start as the sine-cosine table of their 16x16 grid
    qu = model.backbone.qu
    assert qu.query_init == 'sincos'
    table = build_sincos2d_pos_embed([16, 16], dim=64) * math.sqrt(2)
    torch.testing.assert_close(loaded['qu.q.weight'], table)

    with torch.no_grad():
        feats = model.eval().extract_feat(torch.randn(1, 3, 128, 128))
    assert len(feats) == 1 and feats[0].shape == (1, 64, 16, 16)
    assert qu.query_grid == (16, 16)


def test_shrunk_demo_trains_the_vit_at_a_tenth_of_qu_and_the_head():
    """The paper's Shrunk ratio: the pretrained ViT (QD layer included) at
    1e-4, QU and the head at the plain demo's 1e-3 (the head's norms without
    weight decay, as in the plain demo)."""
    cfg = _load(SHRUNK_DEMO)
    model = MODELS.build(cfg.model)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = param_group_values(model, optim, 'lr')
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(1e-3)
    for name, value in lr.items():
        on_vit = name.startswith('backbone.') and \
            not name.startswith('backbone.qu.')
        assert value == pytest.approx(1e-4 if on_vit else 1e-3), name
    assert 'backbone.layers.2.attn.attn.in_proj_weight' in lr  # QD
    decay = param_group_values(model, optim, 'weight_decay')
    assert decay['decode_head.decoders.0.layers.0.norm1.weight'] == 0
    assert decay['backbone.qu.q.weight'] == pytest.approx(0.01)
    assert cfg.train_cfg.max_iters == 1500


def test_shrunk_demo_schedule_ends_at_a_quarter_of_the_peak():
    """Warm-up over 100 iterations, then every group's learning rate
    decays linearly to a quarter of its peak at the last iteration (not to
    0: QU still learns to read its place at the end)."""
    from mmengine.optim.scheduler import _ParamScheduler
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = _load(SHRUNK_DEMO)
    model = MODELS.build(cfg.model)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    peak = [group['lr'] for group in optim.param_groups]
    schedulers = [
        PARAM_SCHEDULERS.build(dict(s, optimizer=optim))
        for s in cfg.param_scheduler
    ]
    assert all(isinstance(s, _ParamScheduler) for s in schedulers)
    seen = {}
    for it in range(cfg.train_cfg.max_iters):
        seen[it] = [
            group['lr'] / p for group, p in zip(optim.param_groups, peak)
        ]
        for scheduler in schedulers:
            scheduler.step()
    assert seen[0] == pytest.approx([1e-3] * len(peak))
    assert seen[100] == pytest.approx([1.0] * len(peak))
    last = cfg.train_cfg.max_iters - 1
    assert seen[800] == pytest.approx([0.625] * len(peak), rel=2e-3)
    assert seen[last] == pytest.approx([0.25] * len(peak), rel=2e-3)


def test_shrunk_demo_has_no_dropout_in_qu_and_the_head():
    """Dropout 0 in QU and the ATM head (the dropout masks cost 40% of a CPU
    step); the official 0.1 stays the modules' default."""
    cfg = _load(SHRUNK_DEMO)
    model = MODELS.build(cfg.model)
    drops = {
        name: module.p
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Dropout)
    }
    assert any(n.startswith('backbone.qu.') for n in drops)
    assert any(n.startswith('decode_head.') for n in drops)
    assert all(p == 0 for p in drops.values()), drops
    attn = [
        m for n, m in model.named_modules()
        if isinstance(m, torch.nn.MultiheadAttention)
    ]
    assert attn and all(m.dropout == 0 for m in attn)


def test_shrunk_demo_refuses_a_checkpoint_without_the_vit(tmp_path):
    from mmseg_segvit.checkpoints import ConversionError
    path = str(tmp_path / 'iter_500.pth')
    _plain_demo_checkpoint(path)
    cfg = _load(SHRUNK_DEMO)
    cfg.model.backbone.init_cfg.update(checkpoint=path, prefix='model.')
    with pytest.raises(ConversionError, match="no key starting with 'model.'"):
        MODELS.build(cfg.model).init_weights()
