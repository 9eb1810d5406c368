"""Loading TimmViT weights: release and timm files, strict, safe."""
import os

import pytest
import timm
import torch
from mmseg.registry import MODELS
from official_dinov2_reference import RefDinoV2, randomise
from official_dinov3_reference import RefDinoV3
from safetensors.torch import save_file

from mmseg_segvit.checkpoints import (ConversionError, TimmPretrained,
                                      UnsafeCheckpointError,
                                      load_timm_backbone)
from mmseg_segvit.models.backbones import TimmViT
from mmseg_segvit.pos_table import DINOV2_RULE, resize_pos_table

TINY = dict(embed_dim=32, depth=4, num_heads=2)


def tiny(name, img_size=(56, 56), out_indices=(1, 3), **kwargs):
    return TimmViT(
        name,
        img_size=img_size,
        out_indices=out_indices,
        model_kwargs=dict(TINY),
        **kwargs)


def official_dinov2(tmp_path, registers=False, name='dinov2.pth'):
    ref = RefDinoV2.hub(registers, img_size=518, **TINY)
    randomise(ref)
    path = tmp_path / name
    torch.save(ref.state_dict(), path)
    return ref.state_dict(), str(path)


def timm_full(name, **kwargs):
    """A whole timm model (norm and classifier included) of random values, as
    timm's own files hold it."""
    model = timm.create_model(name, **dict(TINY, **kwargs))
    randomise(model, seed=1)
    return model.state_dict()


def assert_loaded(backbone, state_dict, skip=()):
    own = backbone.vit.state_dict()
    for key, value in state_dict.items():
        if key in own and key not in skip:
            assert torch.equal(own[key], value), key


def test_official_dinov2_keys_and_tokens(tmp_path):
    """Official layout: blocks, layer scales, tokens and table placed."""
    src, path = official_dinov2(tmp_path)
    backbone = tiny('vit_small_patch14_dinov2', img_size=(518, 518))
    notes = load_timm_backbone(backbone, path)
    vit = backbone.vit
    assert torch.equal(vit.blocks[3].ls2.gamma, src['blocks.3.ls2.gamma'])
    assert torch.equal(vit.cls_token, src['cls_token'])
    assert torch.equal(vit.pos_embed, src['pos_embed'])
    assert any('left out' in n and 'norm' in n for n in notes)


def test_official_dinov2_registers(tmp_path):
    """``register_tokens`` become ``reg_token``; the class token carries its
    position (timm's conversion, same computation)."""
    src, path = official_dinov2(tmp_path, registers=True)
    backbone = tiny('vit_small_patch14_reg4_dinov2', img_size=(518, 518))
    load_timm_backbone(backbone, path)
    vit = backbone.vit
    assert torch.equal(vit.reg_token, src['register_tokens'])
    torch.testing.assert_close(vit.cls_token,
                               src['cls_token'] + src['pos_embed'][:, :1])


def test_table_resized_to_the_config_grid_by_the_official_rule(tmp_path):
    src, path = official_dinov2(tmp_path)
    backbone = tiny('vit_small_patch14_dinov2', img_size=(640, 512))
    notes = load_timm_backbone(backbone, path)
    want = resize_pos_table(src['pos_embed'], (37, 37), (46, 37), 1,
                            DINOV2_RULE)
    assert torch.equal(backbone.vit.pos_embed, want)
    assert any('37x37 to the 46x37' in n for n in notes)


def test_timm_safetensors_and_pth(tmp_path):
    """timm's own files (classifier and final norm left out, logged)."""
    src = timm_full('vit_small_patch14_reg4_dinov2', img_size=56)
    for name in ('model.safetensors', 'model.pth'):
        path = tmp_path / name
        if name.endswith('.safetensors'):
            save_file(src, str(path))
        else:
            torch.save(dict(state_dict=src), path)
        backbone = tiny('vit_small_patch14_reg4_dinov2', out_indices=(1, ))
        notes = load_timm_backbone(backbone, str(path))
        assert_loaded(backbone, src)
        assert any('blocks.2' in n and 'blocks.3' in n and 'norm' in n
                   for n in notes)


def _segmentor_checkpoint(tmp_path, name, img_size, seed, others=None):
    """A randomised :func:`tiny` TimmViT and the path of a whole-model
    checkpoint holding it under ``backbone.`` (and the tensors ``others``), as
    mmengine saves one."""
    backbone = tiny(name, img_size=img_size)
    randomise(backbone.vit, seed=seed)
    path = tmp_path / 'segmentor.pth'
    state_dict = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    torch.save(
        dict(meta=dict(iter=3), state_dict=dict(state_dict, **(others or {}))),
        path)
    return backbone, path


def test_segmentor_checkpoint_prefix(tmp_path):
    """The backbone of a whole-model checkpoint (``backbone.vit.``)."""
    first, path = _segmentor_checkpoint(
        tmp_path, 'vit_small_patch16_dinov3_qkvb', (64, 64), seed=2)
    second = tiny(
        'vit_small_patch16_dinov3_qkvb',
        img_size=(64, 64),
        init_cfg=dict(
            type='Pretrained', checkpoint=str(path), prefix='backbone.vit.'))
    second.init_weights()
    assert_loaded(second, first.vit.state_dict())
    with pytest.raises(ConversionError, match="no key starting with 'x.'"):
        load_timm_backbone(second, str(path), prefix='x.')


@pytest.mark.parametrize('fault, match', [
    ('missing', r'lacks 1 tensor\(s\) of the backbone: blocks.1.attn.qkv'),
    ('extra', r'no place in it: blocks.0.attn.extra'),
    ('shape', r'blocks.0.mlp.fc1.weight \(64, 32\) \(backbone \(128, 32\)'),
])
def test_strict_errors_name_the_tensors(tmp_path, fault, match):
    src, _ = official_dinov2(tmp_path)
    if fault == 'missing':
        del src['blocks.1.attn.qkv.weight']
    elif fault == 'extra':
        src['blocks.0.attn.extra'] = torch.zeros(3)
    else:
        src['blocks.0.mlp.fc1.weight'] = torch.zeros(64, 32)
    path = tmp_path / 'faulty.pth'
    torch.save(src, path)
    backbone = tiny('vit_small_patch14_dinov2', img_size=(518, 518))
    with pytest.raises(ConversionError, match=match):
        load_timm_backbone(backbone, str(path))


def test_wrong_model_for_the_file(tmp_path):
    """A registers file into a model without registers: named."""
    _, path = official_dinov2(tmp_path, registers=True)
    backbone = tiny('vit_small_patch14_dinov2', img_size=(518, 518))
    with pytest.raises(ConversionError, match='4 register tokens'):
        load_timm_backbone(backbone, path)


def test_unknown_table_grid_asks_for_src_grid(tmp_path):
    src, _ = official_dinov2(tmp_path)
    table = resize_pos_table(src['pos_embed'], (37, 37), (20, 30), 1)
    src['pos_embed'] = table
    path = tmp_path / 'finetuned.pth'
    torch.save(src, path)
    backbone = tiny('vit_small_patch14_dinov2', img_size=(518, 518))
    with pytest.raises(ConversionError, match='src_grid'):
        load_timm_backbone(backbone, str(path))
    load_timm_backbone(backbone, str(path), src_grid=(20, 30))
    assert torch.equal(
        backbone.vit.pos_embed,
        resize_pos_table(table, (20, 30), (37, 37), 1, DINOV2_RULE))


def test_pickle_with_code_is_refused(tmp_path):

    class Payload:

        def __reduce__(self):
            return (os.system, ('true', ))

    path = tmp_path / 'evil.pth'
    torch.save(dict(model={'cls_token': torch.zeros(1)}, x=Payload()), path)
    backbone = tiny('vit_small_patch14_dinov2')
    with pytest.raises(UnsafeCheckpointError, match='refused'):
        load_timm_backbone(backbone, str(path))


def test_missing_file():
    backbone = tiny(
        'vit_small_patch14_dinov2',
        init_cfg=dict(type='Pretrained', checkpoint='nope.pth'))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        backbone.init_weights()


def test_bad_init_cfg_keys():
    backbone = tiny(
        'vit_small_patch14_dinov2',
        init_cfg=dict(
            type='Pretrained', checkpoint='a.pth', map_location='cpu'))
    with pytest.raises(ValueError, match='map_location'):
        backbone.init_weights()


def test_dinov3_nonzero_qkv_bias_needs_the_qkvb_model(tmp_path):
    """timm's bias-free DINOv3 models would drop the biases silently."""
    ref = RefDinoV3(**TINY)
    randomise(ref)
    path = tmp_path / 'dinov3.pth'
    torch.save(ref.state_dict(), path)
    backbone = tiny('vit_small_patch16_dinov3', img_size=(64, 64))
    with pytest.raises(ConversionError, match='vit_small_patch16_dinov3_qkvb'):
        load_timm_backbone(backbone, str(path))
    # zero biases (the distilled releases) load into the bias-free model
    state = ref.state_dict()
    for key in [k for k in state if k.endswith('qkv.bias')]:
        state[key] = torch.zeros_like(state[key])
    torch.save(state, path)
    load_timm_backbone(backbone, str(path))
    assert torch.equal(backbone.vit.rope.periods, state['rope_embed.periods'])


@pytest.mark.parametrize('name, nest, size', [
    ('beitv2_base_patch16_224', 'model', (64, 64)),
    ('eva02_small_patch14_224', 'module', (56, 84)),
])
def test_beitv2_and_eva02_files(tmp_path, name, nest, size):
    """Release-style nesting (``model`` / ``module``) of timm-layout weights at
    224, loaded into another crop: BEiT-v2's relative position tables and
    EVA-02's table resized by timm's filter and rule."""
    src = timm_full(name)
    path = tmp_path / 'release.pth'
    torch.save({nest: src, 'epoch': 10}, path)
    backbone = tiny(name, img_size=size)
    load_timm_backbone(backbone, str(path))
    own = backbone.vit.state_dict()
    resized = [k for k in own if k in src and own[k].shape != src[k].shape]
    assert resized  # position tables of another grid
    assert_loaded(backbone, src, skip=resized)
    backbone.eval()
    out = backbone(torch.randn(1, 3, *size))
    assert out[0].shape[-2:] == backbone.grid


def test_timm_pretrained_initializer(tmp_path):
    _, path = official_dinov2(tmp_path)
    backbone = tiny('vit_small_patch14_dinov2', img_size=(518, 518))
    TimmPretrained(path)(backbone)
    with pytest.raises(TypeError, match='TimmViT'):
        TimmPretrained(path)(torch.nn.Linear(2, 2))


def test_frozen_backbone_from_a_config(tmp_path):
    _, path = official_dinov2(tmp_path)
    backbone = MODELS.build(
        dict(
            type='TimmViT',
            model_name='vit_small_patch14_dinov2',
            img_size=(512, 512),
            frozen=True,
            model_kwargs=dict(TINY),
            init_cfg=dict(type='Pretrained', checkpoint=path)))
    backbone.init_weights()
    assert not any(p.requires_grad for p in backbone.parameters())


def test_segmentor_checkpoint_with_mmengine_prefix(tmp_path):
    """``prefix='backbone.'`` (mmengine's usual way) and a saved TimmViT (keys
    ``vit.*``) load every tensor; without a prefix a segmentor checkpoint is
    refused naming the prefix to use."""
    first, whole = _segmentor_checkpoint(
        tmp_path,
        'vit_small_patch14_dinov2', (56, 56),
        seed=3,
        others={'decode_head.q.weight': torch.zeros(5, 32)})
    second = tiny('vit_small_patch14_dinov2', img_size=(56, 56))
    load_timm_backbone(second, str(whole), prefix='backbone.')
    assert_loaded(second, first.vit.state_dict())
    own = tmp_path / 'timmvit.pth'
    torch.save(first.state_dict(), own)
    third = tiny('vit_small_patch14_dinov2', img_size=(56, 56))
    load_timm_backbone(third, str(own))
    assert_loaded(third, first.vit.state_dict())
    with pytest.raises(ConversionError, match="prefix='backbone.'"):
        load_timm_backbone(third, str(whole))


def test_file_of_another_family_is_named(tmp_path):
    """A DINOv2 file into BEiT-v2: timm's BEiT filter fails inside; the error
    names the file and the model."""
    _, path = official_dinov2(tmp_path)
    backbone = tiny('beitv2_base_patch16_224', img_size=(64, 64))
    with pytest.raises(
            ConversionError,
            match=r'dinov2.pth does not fit TimmViT\('
            r'beitv2_base_patch16_224'):
        load_timm_backbone(backbone, path)


@pytest.mark.parametrize('damage', ['truncated', 'empty'])
@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_damaged_file_is_named(tmp_path, damage, suffix):
    """Empty or half-copied files: refused naming the file, not with torch's
    zip-reader or EOF error."""
    src, _ = official_dinov2(tmp_path)
    path = tmp_path / f'dinov2{suffix}'
    if suffix == '.pth':
        torch.save(src, path)
    else:
        save_file({k: v.contiguous() for k, v in src.items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if damage == 'truncated' else b'')
    backbone = tiny('vit_small_patch14_dinov2', img_size=(518, 518))
    with pytest.raises(
            UnsafeCheckpointError,
            match=rf'dinov2\{suffix}.*(truncated|corrupted)'):
        load_timm_backbone(backbone, str(path))
