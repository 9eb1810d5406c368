"""Converting official Shrunk checkpoints (vit_shrink + TPNATMHead)."""
import os.path as osp

import pytest
import torch
from mmseg.registry import MODELS
from official_checkpoints import (DIM, EMBED, HEADS, LAYERS, NUM_CLASSES,
                                  assert_computes_like, load_numbered,
                                  official_shrunk, shrunk_cfg, tiny_cfg,
                                  vit_shapes)
from official_segvit_reference import (OfficialATMHead, OfficialTPNATMHead,
                                       OfficialViTShrink)

from mmseg_segvit.checkpoints import (ConversionError,
                                      convert_official_state_dict,
                                      describe_official)
from mmseg_segvit.tools import convert_official_segvit as tool
from mmseg_segvit.utils.configs import build_device


def test_reference_has_the_official_shrunk_keys():
    sd, _, _ = official_shrunk()
    for key in [
            'decode_head.q.weight', 'decode_head.input_proj_2.bias',
            'decode_head.proj_norm_1.weight',
            'decode_head.decoder_2.layers.1.multihead_attn.in_proj_weight',
            'decode_head.atm.decoder_1.layers.1.multihead_attn.v.weight',
            'decode_head.atm.q.weight', 'decode_head.atm.class_embed.bias',
            'decode_head.atm.loss_decode.criterion.empty_weight',
            'decode_head.loss_decode.criterion.empty_weight',
            'backbone.layers.2.attn.attn.in_proj_weight'
    ]:
        assert key in sd, key
    assert sd['decode_head.q.weight'].shape == (16, DIM)  # (64 / 16) ** 2
    info = describe_official(sd)
    assert info['shrunk'] and info['num_classes'] == NUM_CLASSES


def test_converted_shrunk_model_computes_what_the_official_one_computes():
    sd, ref_backbone, ref_head = official_shrunk()
    model = MODELS.build(shrunk_cfg())
    converted, notes = convert_official_state_dict(sd, model)
    model.load_state_dict(converted, strict=True)
    assert len(notes) == 2  # the two loss buffers
    for m in (model, ref_backbone, ref_head):
        m.eval()
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = ref_backbone(img)
        want = ref_head(tokens)
    assert [t.shape[1] for t in tokens] == [16, 4]  # 1/16, then 1/32
    assert_computes_like(model, img, want, num_outputs=2)


def test_every_shrunk_tensor_lands_where_it_belongs():
    sd, _, _ = official_shrunk()
    model = load_numbered(sd, shrunk_cfg())
    qu, head = model.backbone.qu, model.decode_head
    expected = {
        'decode_head.q.weight':
        qu.q.weight,
        'decode_head.atm.q.weight':
        head.q.weight,
        'decode_head.atm.class_embed.bias':
        head.class_embed.bias,
        'backbone.layers.2.ln1.weight':
        model.backbone.layers[2].ln1.weight,
        'backbone.layers.2.attn.attn.in_proj_weight':
        model.backbone.layers[2].attn.attn.in_proj_weight,
    }
    for n in (1, 2):  # QU levels: high resolution first in both
        expected[f'decode_head.input_proj_{n}.weight'] = \
            qu.input_projs[n - 1].weight
        expected[f'decode_head.proj_norm_{n}.bias'] = qu.proj_norms[n - 1].bias
        for j in range(LAYERS):
            pre = f'decode_head.decoder_{n}.layers.{j}.'
            layer = qu.decoders[n - 1].layers[j]
            expected[pre + 'multihead_attn.in_proj_weight'] = \
                layer.multihead_attn.in_proj_weight
            expected[pre + 'self_attn.out_proj.bias'] = \
                layer.self_attn.out_proj.bias
            expected[pre + 'norm3.weight'] = layer.norm3.weight
    for j in range(LAYERS):
        pre = f'decode_head.atm.decoder_1.layers.{j}.'
        layer = head.decoders[0].layers[j]
        expected[pre + 'multihead_attn.k.weight'] = \
            layer.multihead_attn.k.weight
        expected[pre + 'linear2.bias'] = layer.linear2.bias
    for key, param in expected.items():
        assert torch.equal(param, sd[key]), key
    values = {float(v.flatten()[0]) for v in model.state_dict().values()}
    assert len(values) == len(model.state_dict()) == len(sd) - 2


def test_plain_and_shrunk_checkpoints_need_matching_configs():
    sd, _, _ = official_shrunk()
    with pytest.raises(
            ConversionError,
            match=r'is a Shrunk model .* builds a plain ATM model'
            r'.*use a -shrunk config'):
        convert_official_state_dict(sd, MODELS.build(tiny_cfg()))
    plain = OfficialATMHead(64, EMBED, DIM, NUM_CLASSES, LAYERS, HEADS, 3)
    sd = {f'decode_head.{k}': v for k, v in plain.state_dict().items()}
    sd.update({
        f'backbone.{k}': v
        for k, v in MODELS.build(shrunk_cfg()).backbone.state_dict().items()
        if not k.startswith('qu.')
    })
    with pytest.raises(ConversionError, match='is a plain ATM model'):
        convert_official_state_dict(sd, MODELS.build(shrunk_cfg()))


def test_shrunk_class_count_and_unknown_keys():
    sd, _, _ = official_shrunk(num_classes=7)
    with pytest.raises(ConversionError, match='trained for 7 classes'):
        convert_official_state_dict(sd, MODELS.build(shrunk_cfg()))
    converted, notes = convert_official_state_dict(
        sd, MODELS.build(shrunk_cfg()), backbone_only=True)
    assert 'qu.q.weight' in converted and 'ShrunkViT re-initialises' in \
        notes[-1]
    sd['decode_head.conv_0.weight'] = torch.zeros(1)  # commented out
    with pytest.raises(ConversionError, match=r'decode_head\.conv_0'):
        convert_official_state_dict(sd, MODELS.build(shrunk_cfg(7)))


def test_find_config_matches_the_released_shrunk_models():
    cases = {
        150: (40, 'segvit_vit-l16-shrunk_8xb2-160k_ade20k-640x640.py'),
        171: (32, 'segvit_vit-l16-shrunk_8xb2-80k_coco-stuff10k-512x512.py'),
        60: (30, 'segvit_vit-l16-shrunk_4xb4-80k_pascal-context-480x480.py'),
        59:
        (30, 'segvit_vit-l16-shrunk_4xb4-80k_pascal-context-59-480x480.py'),
    }
    for classes, (grid, name) in cases.items():
        sd = vit_shapes(1024, 24, classes, grid * grid + 1)
        sd['decode_head.atm.q.weight'] = sd.pop('decode_head.q.weight')
        assert osp.basename(tool.find_config(describe_official(sd))) == name


def test_real_shrunk_config_takes_an_official_shrunk_layout():
    """The names and shapes of ade_shrunk_53.9.pth (built on 'meta')."""
    path = osp.join(tool.CONFIG_DIR,
                    'segvit_vit-l16-shrunk_8xb2-160k_ade20k-640x640.py')
    model = tool.build_model(path)
    with build_device('meta'):
        backbone = OfficialViTShrink(
            shrink_idx=8,
            img_size=(640, 640),
            patch_bias=True,
            embed_dims=1024,
            num_layers=24,
            num_heads=16,
            out_indices=[7, 23],
            norm_cfg=dict(type='LN', eps=1e-6),
            with_cls_token=False)
        head = OfficialTPNATMHead(640, 1024, 512, 150, 3, 16, 2)
    sd = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    sd.update({f'decode_head.{k}': v for k, v in head.state_dict().items()})
    converted, _ = convert_official_state_dict(sd, model)
    model.load_state_dict(converted, strict=True, assign=True)
    assert model.backbone.qu.q.weight.shape == (1600, 512)
