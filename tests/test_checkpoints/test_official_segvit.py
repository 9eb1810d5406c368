"""Converting official SegViT checkpoints: key rules, strictness, numbers."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS
from official_checkpoints import (DIM, EMBED, LAYERS, assert_computes_like,
                                  load_numbered, official_checkpoint, tiny_cfg,
                                  vit_shapes)

from mmseg_segvit.checkpoints import (ConversionError,
                                      convert_official_state_dict,
                                      describe_official, load_weights_file,
                                      rename_official_keys)
from mmseg_segvit.tools import convert_official_segvit as tool


def test_official_reference_has_the_official_keys():
    sd, _, _ = official_checkpoint()
    keys = set(sd)
    for key in [
            'decode_head.input_proj_1.weight', 'decode_head.proj_norm_3.bias',
            'decode_head.decoder_2.layers.1.self_attn.in_proj_weight',
            'decode_head.decoder_1.layers.0.multihead_attn.k.bias',
            'decode_head.decoder_3.layers.1.norm3.weight',
            'decode_head.q.weight', 'decode_head.class_embed.bias',
            'decode_head.loss_decode.criterion.empty_weight',
            'backbone.layers.3.attn.attn.in_proj_weight',
            'backbone.layers.0.ffn.layers.0.0.weight',
            'backbone.patch_embed.projection.weight', 'backbone.pos_embed'
    ]:
        assert key in keys, key
    # 3 stages x (proj 2 + norm 2 + 2 layers x 22) + q + cls 2 + buffer
    assert sum(k.startswith('decode_head.') for k in keys) == 3 * 48 + 4


def test_converted_model_computes_what_the_official_head_computes():
    sd, backbone, ref = official_checkpoint()
    model = MODELS.build(tiny_cfg())
    converted, notes = convert_official_state_dict(sd, model)
    model.load_state_dict(converted, strict=True)
    assert notes == [
        'dropped decode_head.loss_decode.criterion.empty_weight'
        ' (a constant of the official loss)'
    ]
    model.eval()
    ref.eval()
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = ref(list(model.extract_feat(img)))
    assert_computes_like(model, img, want, num_outputs=3)


def test_every_tensor_lands_where_it_belongs():
    sd, _, ref = official_checkpoint()
    model = load_numbered(sd, tiny_cfg())
    head = model.decode_head
    expected = {
        'decode_head.q.weight': head.q.weight,
        'decode_head.class_embed.weight': head.class_embed.weight,
        'backbone.pos_embed': model.backbone.pos_embed,
        'backbone.layers.2.ln2.bias': model.backbone.layers[2].ln2.bias,
    }
    for n in range(1, 4):  # official numbering starts at 1 ...
        i = n - 1  # ... ours at 0; both from the deepest stage
        expected[f'decode_head.input_proj_{n}.weight'] = \
            head.input_projs[i].weight
        expected[f'decode_head.proj_norm_{n}.bias'] = head.proj_norms[i].bias
        for j in range(LAYERS):
            layer = head.decoders[i].layers[j]
            pre = f'decode_head.decoder_{n}.layers.{j}.'
            expected[pre + 'self_attn.in_proj_weight'] = \
                layer.self_attn.in_proj_weight
            expected[pre + 'self_attn.out_proj.bias'] = \
                layer.self_attn.out_proj.bias
            for proj in 'qkv':
                expected[pre + f'multihead_attn.{proj}.weight'] = getattr(
                    layer.multihead_attn, proj).weight
            expected[pre + 'multihead_attn.proj.bias'] = \
                layer.multihead_attn.proj.bias
            for lin in ('linear1', 'linear2', 'norm1', 'norm2', 'norm3'):
                expected[pre + f'{lin}.weight'] = getattr(layer, lin).weight
    for key, param in expected.items():
        assert torch.equal(param, sd[key]), key
    # and every model tensor came from exactly one checkpoint tensor
    values = {float(v.flatten()[0]) for v in model.state_dict().values()}
    assert len(values) == len(model.state_dict()) == len(sd) - 1
    # the reference's deepest-stage projection is ours at index 0
    assert ref.input_proj[0] is ref.input_proj_1


def test_unknown_key_is_an_error_naming_it():
    sd, _, _ = official_checkpoint()
    sd['decode_head.conv_0.weight'] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r'decode_head\.conv_0\.weight'):
        rename_official_keys(sd)


def test_missing_and_left_over_keys_are_errors_naming_them():
    sd, _, _ = official_checkpoint()
    model = MODELS.build(tiny_cfg())
    missing = dict(sd)
    del missing['decode_head.decoder_2.layers.1.linear1.bias']
    with pytest.raises(
            ConversionError,
            match=r'lacks: decode_head\.decoders\.1\.layers\.1'
            r'\.linear1\.bias'):
        convert_official_state_dict(missing, model)
    extra = dict(sd)  # a fourth stage the config does not have
    extra['decode_head.input_proj_4.weight'] = torch.zeros(DIM, EMBED)
    with pytest.raises(
            ConversionError,
            match=r'model lacks: decode_head\.input_projs\.3'):
        convert_official_state_dict(extra, model)
    final_norm = dict(sd)
    final_norm['backbone.ln1.weight'] = torch.ones(EMBED)
    final_norm['backbone.ln1.bias'] = torch.zeros(EMBED)
    with pytest.raises(ConversionError, match='final_norm=True'):
        convert_official_state_dict(final_norm, model)
    # mmseg 1.x's ViT has no patch-embedding bias unless asked for
    cfg = tiny_cfg()
    cfg['backbone']['patch_bias'] = False
    with pytest.raises(
            ConversionError, match=r'projection\.bias.*patch_bias=True'):
        convert_official_state_dict(sd, MODELS.build(cfg))


def test_shape_mismatch_is_an_error_naming_the_key():
    sd, _, _ = official_checkpoint()
    sd['decode_head.decoder_1.layers.0.linear1.weight'] = torch.zeros(
        DIM * 2, DIM)
    with pytest.raises(
            ConversionError,
            match=r'decoders\.0\.layers\.0\.linear1\.weight: '
            r'checkpoint \(32, 16\), model \(64, 16\)'):
        convert_official_state_dict(sd, MODELS.build(tiny_cfg()))


def test_wrong_class_count_says_how_to_fine_tune():
    sd, _, _ = official_checkpoint(num_classes=7)
    model = MODELS.build(tiny_cfg(num_classes=5))
    with pytest.raises(
            ConversionError,
            match=r'trained for 7 classes.*head has 5.*'
            r'--backbone-only'):
        convert_official_state_dict(sd, model, path='ade.pth')
    # the backbone alone still converts, for model.pretrained
    converted, _ = convert_official_state_dict(sd, model, backbone_only=True)
    model.backbone.load_state_dict(converted, strict=True)
    assert 'layers.0.ln1.weight' in converted


def test_real_vit_b_checkpoint_into_vit_l_config_is_refused():
    vit_b = vit_shapes(768, 12, 150, 32 * 32 + 1)  # ade_51.3.pth
    model = tool.build_model(
        osp.join(tool.CONFIG_DIR,
                 'segvit_vit-l16_8xb2-160k_ade20k-640x640.py'))
    with pytest.raises(
            ConversionError,
            match=r'ade_51\.3\.pth holds a ViT-B/16 \(12 layers '
            r'of 768 channels\).*builds a ViT-L/16 \(24 layers '
            r'of 1024'):
        convert_official_state_dict(vit_b, model, path='ade_51.3.pth')


def test_position_embeddings_are_resized_to_the_config_crop():
    sd, _, _ = official_checkpoint(img=64)
    model = MODELS.build(tiny_cfg(img=96))
    # 16 positions are not a released grid: the source grid is required
    with pytest.raises(
            ConversionError, match=r'16 patch positions.*'
            r'--src-grid H W'):
        convert_official_state_dict(sd, model)
    converted, notes = convert_official_state_dict(sd, model, src_grid=(4, 4))
    model.load_state_dict(converted, strict=True)
    assert converted['backbone.pos_embed'].shape == (1, 37, EMBED)
    assert any('resized backbone.pos_embed from (1, 17, 32)' in n
               for n in notes)
    want = model.backbone.resize_pos_embed(sd['backbone.pos_embed'], (6, 6),
                                           (4, 4), 'bicubic')
    torch.testing.assert_close(converted['backbone.pos_embed'], want)


def test_find_config_matches_each_released_model():
    cases = {
        (768, 12, 150, 32 * 32 + 1):
        'segvit_vit-b16_8xb2-160k_ade20k-512x512.py',
        (1024, 24, 150, 40 * 40 + 1):
        'segvit_vit-l16_8xb2-160k_ade20k-640x640.py',
        (1024, 24, 171, 32 * 32 + 1):
        'segvit_vit-l16_8xb2-80k_coco-stuff10k-512x512.py',
        (1024, 24, 60, 30 * 30 + 1):
        'segvit_vit-l16_4xb4-80k_pascal-context-480x480.py',
        (1024, 24, 59, 30 * 30 + 1):
        'segvit_vit-l16_4xb4-80k_pascal-context-59-480x480.py',
    }
    for signature, name in cases.items():
        info = describe_official(vit_shapes(*signature))
        assert osp.basename(tool.find_config(info)) == name
    info['num_classes'] = 3
    with pytest.raises(ConversionError, match='no config .* pass --config'):
        tool.find_config(info)


def test_cli_writes_a_strictly_loadable_checkpoint(tmp_path, capsys):
    sd, _, _ = official_checkpoint()
    src = str(tmp_path / 'official.pth')
    # what an mmcv 1.x checkpoint carries besides the weights
    torch.save(
        dict(
            state_dict=sd,
            meta=dict(CLASSES=('a', 'b'), mmcv_version='1.4.4', iter=160000),
            optimizer=dict(state={}, param_groups=[dict(lr=0.1)])), src)
    cfg = Config(dict(model=tiny_cfg()))
    cfg_path = str(tmp_path / 'tiny.py')
    cfg.dump(cfg_path)
    dst = str(tmp_path / 'out' / 'converted.pth')
    tool.main([src, dst, '--config', cfg_path])
    out = capsys.readouterr().out
    assert f'wrote {len(sd) - 1} tensors' in out and 'strict=True' in out
    ckpt = load_weights_file(dst)
    model = MODELS.build(tiny_cfg())
    model.load_state_dict(ckpt['state_dict'], strict=True)
    # what `mim test --checkpoint` does (mmengine, weights_only loading)
    load_checkpoint(MODELS.build(tiny_cfg()), dst, strict=True)
    assert ckpt['meta']['converted_from'] == 'official.pth'
    for key in ('decode_head.q.weight', 'backbone.layers.1.ln2.weight'):
        torch.testing.assert_close(model.state_dict()[key], sd[key])
    # errors end the CLI with a message, not a traceback
    with pytest.raises(SystemExit, match='error: .*trained for 5 classes'):
        cfg = Config(dict(model=tiny_cfg(num_classes=4)))
        cfg.dump(cfg_path)
        tool.main([src, dst, '--config', cfg_path])
