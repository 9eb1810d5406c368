"""Layer-wise lr decay: the parameter groups built for a segmentor on a tiny
timm ViT / Eva / Beit with ATMHead, name by name."""
import re

import pytest
import torch
from fixtures import tiny_segmentor_cfg
from mmengine.optim import build_optim_wrapper
from mmseg.registry import MODELS

LR, WD, DECAY, HEAD_MULT = 1e-3, 0.05, 0.5, 10.0
DEPTH = 3
# timm name, patch, model_kwargs: a 3-block, 32-wide model of each family
FAMILIES = {
    'dinov2-reg4': ('vit_small_patch14_reg4_dinov2', 14),
    'dinov3': ('vit_large_patch16_dinov3', 16),
    'beitv2': ('beitv2_large_patch16_224', 16),
    'eva02': ('eva02_large_patch14_224', 14),
}
# What the recipes exclude from weight decay, written out by name.
NO_DECAY = re.compile(r'(bias$|norm|gamma|\.ls[12]\.|_token$|pos_embed|'
                      r'relative_position_bias_table)')


def _segmentor(family, frozen=False):
    name, patch = FAMILIES[family]
    size = 4 * patch
    cfg = tiny_segmentor_cfg(size=(size, size), patch_size=patch)
    cfg['backbone'] = dict(
        type='TimmViT',
        model_name=name,
        img_size=(size, size),
        out_indices=(0, 1, 2),
        frozen=frozen,
        model_kwargs=dict(depth=DEPTH, embed_dim=32, num_heads=2))
    return MODELS.build(cfg)


def _optim_cfg(**paramwise):
    paramwise.setdefault('layer_decay_rate', DECAY)
    return dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
        constructor='ViTLayerDecayOptimWrapperConstructor',
        paramwise_cfg=paramwise)


def _groups_by_name(optim):
    found = {}
    for group in optim.optimizer.param_groups:
        for name, param in zip(group['param_names'], group['params']):
            assert name not in found, f'{name} is in two groups'
            found[name] = (group['lr'], group['weight_decay'], param)
    return found


def _expected_lr(name):
    """BEiT's rule: stem decay**(L+1), block i decay**(L-i), rest 1."""
    if not name.startswith('backbone.'):
        return LR * HEAD_MULT  # the custom key on top of layer L + 1
    match = re.match(r'backbone\.vit\.blocks\.(\d+)\.', name)
    if match:
        return LR * DECAY**(DEPTH - int(match.group(1)))
    if name.startswith('backbone.vit.norm.'):
        return LR * DECAY  # timm groups a final norm with the last block
    if name.startswith(('backbone.vit.fc_norm.', 'backbone.vit.head.')):
        return LR  # after the blocks, ungrouped by timm: layer L + 1
    return LR * DECAY**(DEPTH + 1)  # tokens, position table, patch embed


@pytest.mark.parametrize('family', FAMILIES)
def test_groups_give_each_parameter_its_layer_lr_and_decay(family):
    model = _segmentor(family)
    optim = build_optim_wrapper(
        model,
        _optim_cfg(custom_keys={'decode_head': dict(lr_mult=HEAD_MULT)}))
    found = _groups_by_name(optim)
    params = dict(model.named_parameters())
    assert set(found) == set(params)
    for name, (lr, wd, param) in found.items():
        assert param is params[name]
        assert lr == pytest.approx(_expected_lr(name)), name
        assert wd == (0.0 if NO_DECAY.search(name) else WD), name
    # the layers the recipe names, where the family has them
    last = f'backbone.vit.blocks.{DEPTH - 1}.mlp.fc2.weight'
    assert found[last][:2] == (pytest.approx(LR * DECAY), WD)
    stem = found['backbone.vit.patch_embed.proj.weight']
    assert stem[:2] == (pytest.approx(LR * DECAY**(DEPTH + 1)), WD)
    for token in ('cls_token', 'reg_token', 'pos_embed'):
        if f'backbone.vit.{token}' in found:
            assert found[f'backbone.vit.{token}'][:2] == (pytest.approx(
                LR * DECAY**(DEPTH + 1)), 0.0)
    assert found['decode_head.q.weight'][:2] == (pytest.approx(LR * HEAD_MULT),
                                                 WD)
    assert found['decode_head.proj_norms.0.weight'][1] == 0.0


def test_family_specific_parameters_are_grouped_by_the_recipe():
    """DINOv2 reg4 has register tokens and ls1/ls2 layer scales, BEiT-v2
    gamma_1/gamma_2, q_bias and per-block relative position tables."""
    found = _groups_by_name(
        build_optim_wrapper(_segmentor('dinov2-reg4'), _optim_cfg()))
    assert found['backbone.vit.reg_token'][:2] == (pytest.approx(
        LR * DECAY**(DEPTH + 1)), 0.0)
    assert found['backbone.vit.blocks.0.ls1.gamma'][:2] == (pytest.approx(
        LR * DECAY**DEPTH), 0.0)
    found = _groups_by_name(
        build_optim_wrapper(_segmentor('beitv2'), _optim_cfg()))
    for key in ('gamma_1', 'attn.q_bias', 'attn.relative_position_bias_table'):
        assert found[f'backbone.vit.blocks.1.{key}'][:2] == (pytest.approx(
            LR * DECAY**(DEPTH - 1)), 0.0), key
    # without a custom key the head learns at the base lr
    assert found['decode_head.class_embed.weight'][0] == pytest.approx(LR)


def test_frozen_backbone_parameters_get_no_group():
    model = _segmentor('dinov3', frozen=True)
    optim = build_optim_wrapper(model, _optim_cfg())
    found = _groups_by_name(optim)
    assert found and all(n.startswith('decode_head.') for n in found)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(found) == trainable
    assert found['decode_head.q.weight'][0] == pytest.approx(LR)


def test_decay_rate_one_is_the_plain_optimizer():
    found = _groups_by_name(
        build_optim_wrapper(
            _segmentor('eva02'), _optim_cfg(layer_decay_rate=1.0)))
    assert all(lr == pytest.approx(LR) for lr, _, _ in found.values())


def test_optimizer_steps_with_the_groups():
    """One AdamW step moves every trainable parameter; lr 0 would not."""
    model = _segmentor('dinov2-reg4')
    optim = build_optim_wrapper(model, _optim_cfg())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optim.step()
    for name, param in model.named_parameters():
        assert not torch.equal(param, before[name]), name


@pytest.mark.parametrize('paramwise, message', [
    (dict(), 'layer_decay_rate must be a number in \\(0, 1\\]'),
    (dict(layer_decay_rate=0.0), 'got 0.0'),
    (dict(layer_decay_rate=1.5), 'got 1.5'),
    (dict(layer_decay_rate=0.9, num_layers=24), "not \\['num_layers'\\]"),
])
def test_bad_settings_name_the_setting(paramwise, message):
    cfg = _optim_cfg()
    cfg['paramwise_cfg'] = paramwise
    with pytest.raises(ValueError, match=message):
        build_optim_wrapper(_segmentor('eva02'), cfg)


def test_backbone_without_a_timm_vit_is_refused():
    model = MODELS.build(tiny_segmentor_cfg())  # mmseg's VisionTransformer
    with pytest.raises(TypeError, match='VisionTransformer has none'):
        build_optim_wrapper(model, _optim_cfg())


def test_mmseg_timm_backbone_is_found_too():
    """MMSeg's TIMMBackbone on a timm ViT (features_only) holds the model at
    ``timm_model.model``: the same rule applies under that prefix."""
    cfg = tiny_segmentor_cfg(size=(32, 32))
    cfg['backbone'] = dict(
        type='TIMMBackbone',
        model_name='vit_tiny_patch16_224',
        features_only=True,
        pretrained=False,
        out_indices=(0, 1, 2),
        depth=DEPTH,
        embed_dim=32,
        num_heads=2,
        img_size=32,
        patch_size=8)
    found = _groups_by_name(
        build_optim_wrapper(MODELS.build(cfg), _optim_cfg()))
    prefix = 'backbone.timm_model.model.'
    assert found[prefix + 'blocks.2.mlp.fc1.weight'][:2] == (pytest.approx(
        LR * DECAY), WD)
    assert found[prefix + 'cls_token'][:2] == (pytest.approx(
        LR * DECAY**(DEPTH + 1)), 0.0)
    assert found['decode_head.q.weight'][0] == pytest.approx(LR)
