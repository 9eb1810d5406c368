"""Pretrained ViT weights from timm / mmseg files, and safe loading."""
import os

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from official_checkpoints import vit16_cfg
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer as TimmViT

from mmseg_segvit.checkpoints import (ConversionError, UnsafeCheckpointError,
                                      convert_pretrained_vit,
                                      load_pretrained_vit, load_weights_file)
from mmseg_segvit.tools import convert_official_segvit, convert_timm_vit

EMBED, DEPTH, HEADS = 32, 4, 4


def timm_vit16(img: int, depth: int, **kwargs) -> TimmViT:
    """timm's ViT/16 of ``EMBED`` channels and ``HEADS`` heads (``kwargs``
    added), no download."""
    return TimmViT(
        img_size=img,
        patch_size=16,
        embed_dim=EMBED,
        depth=depth,
        num_heads=HEADS,
        **kwargs)


def timm_vit(img=64):
    """A small timm ViT (AugReg layout: class token, no final-norm use), random
    weights, no download."""
    model = timm_vit16(img, DEPTH, num_classes=10)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(
                torch.randn_like(p) * 0.2 +
                ('norm' in name and 'weight' in name))
    return model.eval()


def mmseg_vit(img=64, with_cls_token=True, **kwargs):
    """mmseg's ViT configured like the SegViT configs."""
    cfg = mmseg_vit_cfg(img, with_cls_token, **kwargs)
    model = MODELS.build(cfg)
    model.eval()  # mmseg's ViT.train() returns None
    return model


def test_timm_vit_and_converted_backbone_give_the_same_features():
    timm_model = timm_vit()
    sd, notes = convert_pretrained_vit(timm_model.state_dict(), grid=(4, 4))
    assert notes == [
        'dropped the classifier (head.weight, head.bias)',
        'dropped the final norm (ln1): the backbone has final_norm=False'
    ]
    ours = mmseg_vit()
    ours.load_state_dict(sd, strict=True)
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = timm_model.forward_intermediates(
            img, indices=[1, 2, 3], intermediates_only=True)
        got = ours(img)
    assert len(got) == 3
    for g, w in zip(got, want):
        assert g.shape == w.shape == (2, EMBED, 4, 4)
        torch.testing.assert_close(g, w, rtol=0, atol=1e-5)


def test_segvit_backbone_runs_the_timm_blocks_without_class_token():
    """SegViT's configs drop the class token after the position embedding:

    the same as running timm's blocks on the patch tokens alone.
    """
    timm_model = timm_vit()
    sd, _ = convert_pretrained_vit(timm_model.state_dict())
    ours = mmseg_vit(with_cls_token=False)
    ours.load_state_dict(sd, strict=True)
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        x = timm_model.patch_embed(img) + timm_model.pos_embed[:, 1:]
        want = []
        for block in timm_model.blocks:
            x = block(x)
            want.append(x.transpose(1, 2).reshape(1, EMBED, 4, 4))
        got = ours(img)
    for g, w in zip(got, want[1:]):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-5)


@pytest.mark.parametrize('suffix', ['.safetensors', '.pth'])
def test_timm_files_load_and_resize_to_the_crop(tmp_path, suffix):
    timm_model = timm_vit(img=64)  # a 4x4 grid, like 384 / 16 = 24x24
    path = str(tmp_path / f'vit{suffix}')
    if suffix == '.safetensors':
        save_file(timm_model.state_dict(), path)
    else:
        torch.save({'model': timm_model.state_dict()}, path)
    sd, notes = load_pretrained_vit(path, grid=(6, 5), src_grid=(4, 4))
    assert sd['pos_embed'].shape == (1, 31, EMBED)
    assert 'resized pos_embed from (1, 17, 32) to (1, 31, 32)' in notes
    ours = mmseg_vit(img=96)
    ours.img_size = (96, 80)
    ours.pos_embed = torch.nn.Parameter(torch.zeros(1, 31, EMBED))
    ours.load_state_dict(sd, strict=True)
    # the resize is mmseg's own (what it does for `pretrained` weights)
    want = ours.resize_pos_embed(timm_model.pos_embed.detach(), (6, 5), (4, 4),
                                 'bicubic')
    torch.testing.assert_close(sd['pos_embed'], want)
    # and the features still match timm's at the new size
    img = torch.randn(1, 3, 96, 80)
    timm_model.set_input_size(img_size=(96, 80))
    timm_model.pos_embed.data.copy_(sd['pos_embed'])
    with torch.no_grad():
        want = timm_model.forward_intermediates(
            img, indices=[3], intermediates_only=True)[0]
        got = ours(img)[-1]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_mmseg_layout_files_pass_through(tmp_path):
    sd, _ = convert_pretrained_vit(timm_vit().state_dict())
    path = str(tmp_path / 'vit_mmseg.pth')
    torch.save({'state_dict': sd, 'meta': {'note': 'mmseg layout'}}, path)
    again, notes = load_pretrained_vit(path, grid=(4, 4))
    assert notes == []
    assert again.keys() == sd.keys()
    for key in sd:
        assert torch.equal(again[key], sd[key])


def test_unknown_vit_keys_are_errors_naming_them():
    # LayerScale: mmseg's ViT has no place for it
    model = timm_vit16(32, 1, init_values=1e-5)
    with pytest.raises(ConversionError, match=r'layers\.0\.ls1\.gamma'):
        convert_pretrained_vit(model.state_dict())


def test_config_init_cfg_loads_a_timm_safetensors_file(tmp_path):
    timm_model = timm_vit()
    path = str(tmp_path / 'vit.safetensors')
    save_file(timm_model.state_dict(), path)
    backbone = mmseg_vit(
        img=96,
        init_cfg=dict(type='ViTPretrained', checkpoint=path, src_grid=(4, 4)))
    backbone.init_weights()
    sd, _ = load_pretrained_vit(path, grid=(6, 6), src_grid=(4, 4))
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, sd[key]), key
    assert backbone.pos_embed.shape == (1, 37, EMBED)


def test_init_cfg_takes_the_backbone_of_a_segmentor_checkpoint(tmp_path):
    """prefix='backbone.' reads the ViT out of a whole-model checkpoint; a
    ShrunkViT gets every ViT weight from it, QU keeps its own init."""
    vit = mmseg_vit(img=64, with_cls_token=False)
    whole = {f'backbone.{k}': v for k, v in vit.state_dict().items()}
    whole['decode_head.q.weight'] = torch.zeros(3, 16)
    path = str(tmp_path / 'iter_10.pth')
    torch.save({'state_dict': whole, 'meta': {}}, path)
    init = dict(type='ViTPretrained', checkpoint=path, prefix='backbone.')
    shrunk_cfg = mmseg_vit_cfg(
        64,
        False,
        type='ShrunkViT',
        qd_index=2,
        out_indices=[1, 3],
        init_cfg=init)
    shrunk = MODELS.build(shrunk_cfg)
    shrunk.init_weights()
    loaded = shrunk.state_dict()
    for key, value in vit.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert any(k.startswith('qu.') for k in loaded)

    # a ViT weight the file lacks is an error naming it
    del whole['backbone.layers.3.ffn.layers.1.weight']
    torch.save({'state_dict': whole}, path)
    shrunk = MODELS.build(shrunk_cfg)
    with pytest.raises(
            ConversionError,
            match=r'missing layers\.3\.ffn\.layers\.1\.weight'):
        shrunk.init_weights()


def test_cli_converts_for_a_config(tmp_path, capsys):
    timm_model = timm_vit()
    src = str(tmp_path / 'vit.safetensors')
    save_file(timm_model.state_dict(), src)
    cfg = Config(
        dict(
            model=dict(
                type='EncoderDecoder',
                backbone=mmseg_vit_cfg(img=80),
                decode_head=dict(
                    type='ATMHead',
                    in_channels=EMBED,
                    embed_dims=16,
                    num_heads=4,
                    num_classes=3))))
    cfg_path = str(tmp_path / 'cfg.py')
    cfg.dump(cfg_path)
    dst = str(tmp_path / 'pretrain' / 'vit.pth')
    convert_timm_vit.main(
        [src, dst, '--config', cfg_path, '--src-grid', '4', '4'])
    out = capsys.readouterr().out
    assert 'fills the backbone of cfg.py (strict=True)' in out
    ckpt = load_weights_file(dst)
    assert ckpt['state_dict']['pos_embed'].shape == (1, 26, EMBED)
    model = convert_official_segvit.build_model(cfg_path, device='cpu')
    model.backbone.load_state_dict(ckpt['state_dict'], strict=True)


def mmseg_vit_cfg(img, with_cls_token=False, **kwargs):
    """Config of mmseg's ViT like the SegViT configs (no class token)."""
    cfg = dict(
        type='VisionTransformer',
        **vit16_cfg(
            img_size=(img, img),
            embed_dims=EMBED,
            num_layers=DEPTH,
            num_heads=HEADS,
            out_indices=[1, 2, 3],
            with_cls_token=with_cls_token))
    cfg.update(kwargs)
    return cfg


class _RunsCode:
    """Unpickling this would call os.mkdir: a stand-in for any code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target, ))


def crafted_checkpoint(tmp_path, name='evil.pth'):
    path = str(tmp_path / name)
    marker = str(tmp_path / 'code_ran')
    weights = {'state_dict': {'pos_embed': torch.zeros(1, 5, 4)}}
    weights['meta'] = _RunsCode(marker)
    torch.save(weights, path)
    return path, marker


def test_pickle_with_code_is_refused_naming_the_file(tmp_path):
    path, marker = crafted_checkpoint(tmp_path)
    with pytest.raises(
            UnsafeCheckpointError,
            match=r'refused to load .*'
            r'evil\.pth.*weights_only'):
        load_weights_file(path)
    with pytest.raises(UnsafeCheckpointError, match=r'evil\.pth'):
        load_pretrained_vit(path)
    assert not os.path.exists(marker)


def test_converters_refuse_crafted_pickles(tmp_path):
    path, marker = crafted_checkpoint(tmp_path, 'ade_51.3.pth')
    with pytest.raises(SystemExit, match=r'refused to load .*ade_51\.3'):
        convert_official_segvit.main([path, str(tmp_path / 'out.pth')])
    with pytest.raises(SystemExit, match=r'refused to load .*ade_51\.3'):
        convert_timm_vit.main([path, str(tmp_path / 'out.pth')])
    assert not os.path.exists(marker)
    assert not os.path.exists(str(tmp_path / 'out.pth'))


def jax_npz(path, depth=2, dims=EMBED, heads=HEADS, grid=4, classes=10):
    """Random weights in the layout of the original JAX ViT .npz files."""
    import numpy as np
    rng = np.random.default_rng(0)
    hd = dims // heads

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.2

    w = {
        'embedding/kernel': rand(16, 16, 3, dims),
        'embedding/bias': rand(dims),
        'cls': rand(1, 1, dims),
        'Transformer/posembed_input/pos_embedding':
        rand(1, grid * grid + 1, dims),
        'Transformer/encoder_norm/scale': 1 + rand(dims),
        'Transformer/encoder_norm/bias': rand(dims),
        'head/kernel': rand(dims, classes),
        'head/bias': rand(classes),
    }
    for i in range(depth):
        b = f'Transformer/encoderblock_{i}/'
        att = b + 'MultiHeadDotProductAttention_1/'
        for ln in ('LayerNorm_0', 'LayerNorm_2'):
            w[f'{b}{ln}/scale'] = 1 + rand(dims)
            w[f'{b}{ln}/bias'] = rand(dims)
        for name in ('query', 'key', 'value'):
            w[f'{att}{name}/kernel'] = rand(dims, heads, hd)
            w[f'{att}{name}/bias'] = rand(heads, hd)
        w[att + 'out/kernel'] = rand(heads, hd, dims)
        w[att + 'out/bias'] = rand(dims)
        w[b + 'MlpBlock_3/Dense_0/kernel'] = rand(dims, 4 * dims)
        w[b + 'MlpBlock_3/Dense_0/bias'] = rand(4 * dims)
        w[b + 'MlpBlock_3/Dense_1/kernel'] = rand(4 * dims, dims)
        w[b + 'MlpBlock_3/Dense_1/bias'] = rand(dims)
    np.savez(path, **w)
    return path


def test_jax_npz_loads_like_timms_npz_loader(tmp_path):
    from timm.models.vision_transformer import _load_weights
    path = jax_npz(str(tmp_path / 'ViT-B_16.npz'))
    timm_model = timm_vit16(64, 2, num_classes=10)
    _load_weights(timm_model, path)  # timm's own reading of the file
    want, _ = convert_pretrained_vit(
        timm_model.state_dict(), grid=(6, 6), src_grid=(4, 4))
    got, notes = load_pretrained_vit(path, grid=(6, 6), src_grid=(4, 4))
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6)
    assert 'resized pos_embed from (1, 17, 32) to (1, 37, 32)' in notes
