"""No silent partial load of the ViT backbones, on every loading path:

``load_from`` (Runner.load_checkpoint), ``init_cfg`` (Pretrained with and
without prefix, ViTPretrained), ``mmseg.apis.init_model`` with another
img_size, ``--resume``. A checkpoint of another crop loads with its position
tables resized from its own grid; a missing or extra tensor is an error naming
it.
"""
import collections

import pytest
import torch
from fixtures import tiny_segmentor_cfg
from mmengine.config import Config, ConfigDict
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS

from mmseg_segvit.checkpoints import (GRIDS_KEY, ConversionError,
                                      resize_pos_embed)


def _cfg(size=(32, 32), shrunk=False, **backbone):
    cfg = ConfigDict(tiny_segmentor_cfg(num_classes=4, size=size, dropout=0.0))
    cfg.backbone.update(type='FusedVisionTransformer', drop_path_rate=0.0)
    if shrunk:
        cfg.backbone.update(
            type='ShrunkViT',
            qd_index=1,
            out_indices=[0, 2],
            qu_cfg=dict(embed_dims=16, num_heads=2, num_layers=1, dropout=0.0))
        cfg.decode_head.update(
            in_channels=16,
            embed_dims=16,
            use_stages=1,
            use_proj=False,
            mask_mode='per_layer',
            loss_decode=dict(type='ATMLoss'))
    cfg.backbone.update(backbone)
    return cfg


def _build(*args, **kwargs):
    model = MODELS.build(_cfg(*args, **kwargs))
    model.init_weights()
    return model.eval()


def _save(path, state_dict, plain=False):
    """An mmengine-style checkpoint; ``plain``: a state dict rebuilt as a plain
    dict (no recorded grids, as many tools write)."""
    if plain:
        state_dict = dict(state_dict)
    torch.save(dict(meta=dict(), state_dict=state_dict), str(path))
    return str(path)


def _scores(model, size):
    torch.manual_seed(1)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        return model.encode_decode(x, [dict(img_shape=size, pad_shape=size)])


@pytest.mark.parametrize('shrunk', [False, True])
def test_load_from_into_another_crop_resizes_the_position_tables(
        tmp_path, shrunk):
    """A 32x32 model (4x4 grid) loaded into a 48x64 config (6x8): the tables
    are resized from the recorded grid as the 32x32 model resizes them at run
    time, so both predict the same at 48x64."""
    source = _build((32, 32), shrunk)
    sd = source.state_dict()
    assert sd._metadata['backbone'][GRIDS_KEY]['pos_embed'] == (4, 4)
    path = _save(tmp_path / 'iter_10.pth', sd)
    target = _build((48, 64), shrunk)
    load_checkpoint(target, path, map_location='cpu', strict=False)
    assert target.backbone.pos_embed.shape == (1, 1 + 6 * 8, 32)
    torch.testing.assert_close(
        _scores(target, (48, 64)), _scores(source, (48, 64)))
    if shrunk:
        assert target.backbone.qu.q.weight.shape == (6 * 8, 16)
    # and back: saved with its own grid, it loads into a 32x32 model
    again = _build((32, 32), shrunk)
    load_checkpoint(
        again, _save(tmp_path / 'b.pth', target.state_dict()), strict=False)
    assert again.backbone.pos_embed.shape == source.backbone.pos_embed.shape


def test_a_grid_of_the_same_length_but_other_shape_is_resized(tmp_path):
    """16x64 and 32x32 hold as many positions; the recorded grid tells."""
    source = _build((16, 64), patch_size=8)  # 2x8 grid
    path = _save(tmp_path / 'a.pth', source.state_dict())
    target = _build((32, 32))  # 4x4 grid, same length
    load_checkpoint(target, path, strict=False)
    expected = resize_pos_embed(source.backbone.pos_embed, (4, 4), (2, 8))
    assert torch.equal(target.backbone.pos_embed, expected)


def test_unknown_grid_is_refused_and_released_grids_are_known(tmp_path):
    # no recorded grid, 16 positions (not a released grid): refused
    path = _save(tmp_path / 'a.pth', _build((32, 32)).state_dict(), plain=True)
    with pytest.raises(
            ConversionError,
            match=r'backbone\.pos_embed has 16 patch positions'
            r'.*not recorded.*model\.backbone\.img_size'):
        load_checkpoint(_build((48, 64)), path, strict=False)
    # the same length as the model's: loads as it is
    load_checkpoint(_build((32, 32)), path, strict=False)
    # 196 positions: the released 14x14 grid (ViTs at 224)
    source = _build((112, 112))
    path = _save(tmp_path / 'b.pth', source.state_dict(), plain=True)
    target = _build((64, 96))
    load_checkpoint(target, path, strict=False)
    torch.testing.assert_close(
        _scores(target, (64, 96)), _scores(source, (64, 96)))


def test_init_model_with_another_img_size(tmp_path):
    from mmseg.apis import init_model
    source = _build((32, 32))
    path = _save(tmp_path / 'iter_10.pth', source.state_dict())
    config = str(tmp_path / 'tiny.py')
    cfg = _cfg((32, 32))
    cfg.backbone.img_size = (40, 56)
    Config(dict(model=cfg)).dump(config)
    model = init_model(config, path, device='cpu')
    assert model.backbone.pos_embed.shape == (1, 1 + 5 * 7, 32)
    torch.testing.assert_close(
        _scores(model, (40, 56)), _scores(source, (40, 56)))


@pytest.mark.parametrize('shrunk', [False, True])
def test_pretrained_init_cfg_with_prefix_takes_the_backbone(tmp_path, shrunk):
    """mmengine's standard way to take a backbone out of a segmentor
    checkpoint; it used to leave the backbone random."""
    source = _build((32, 32), shrunk)
    path = _save(tmp_path / 'seg.pth', source.state_dict())
    for size in [(32, 32), (48, 64)]:
        cfg = _cfg(size, shrunk)
        cfg.backbone.init_cfg = dict(
            type='Pretrained', checkpoint=path, prefix='backbone.')
        backbone = MODELS.build(cfg.backbone)
        backbone.init_weights()
        if size == (32, 32):
            for key, value in source.backbone.state_dict().items():
                assert torch.equal(backbone.state_dict()[key], value), key
        else:  # resized from the recorded grid, QU's queries too
            target = _build(size, shrunk)
            target.backbone = backbone
            target.decode_head.load_state_dict(source.decode_head.state_dict())
            torch.testing.assert_close(
                _scores(target.eval(), size), _scores(source, size))
    # without prefix the file's keys are the segmentor's: named
    cfg = _cfg((32, 32), shrunk)
    cfg.backbone.init_cfg = dict(type='Pretrained', checkpoint=path)
    backbone = MODELS.build(cfg.backbone)
    with pytest.raises(
            ConversionError,
            match="whole-model checkpoint.*prefix='backbone.'"):
        backbone.init_weights()


def test_model_pretrained_and_vitpretrained_load_strictly(tmp_path):
    source = _build((32, 32))
    vit = {
        k[len('backbone.'):]: v
        for k, v in source.state_dict().items() if k.startswith('backbone.')
    }
    del vit['layers.2.ln2.weight']
    path = _save(tmp_path / 'vit.pth', vit)
    for init in [
            dict(type='Pretrained', checkpoint=path),
            dict(type='ViTPretrained', checkpoint=path)
    ]:
        cfg = _cfg((32, 32))
        cfg.backbone.init_cfg = init
        backbone = MODELS.build(cfg.backbone)
        with pytest.raises(
                ConversionError, match=r'missing layers\.2\.ln2\.weight'):
            backbone.init_weights()


def test_shrunk_qu_in_the_file_is_loaded_not_reinitialised(tmp_path):
    source = _build((32, 32), shrunk=True)
    sd = source.state_dict()
    path = _save(tmp_path / 'seg.pth', sd)
    cfg = _cfg((32, 32), shrunk=True)
    cfg.backbone.init_cfg = dict(
        type='ViTPretrained', checkpoint=path, prefix='backbone.')
    backbone = MODELS.build(cfg.backbone)
    backbone.init_weights()
    assert torch.equal(backbone.qu.q.weight, source.backbone.qu.q.weight)
    # part of QU only: named
    partial = {
        k: v
        for k, v in sd.items() if not k.startswith('backbone.qu.decoders.')
    }
    cfg.backbone.init_cfg.checkpoint = _save(tmp_path / 'p.pth', partial)
    backbone = MODELS.build(cfg.backbone)
    with pytest.raises(ConversionError, match=r'missing qu\.decoders\.0'):
        backbone.init_weights()


def test_missing_or_extra_backbone_tensors_are_named(tmp_path):
    sd = _build((32, 32)).state_dict()
    missing = collections.OrderedDict(
        (k, v) for k, v in sd.items()
        if not k.startswith('backbone.layers.1.'))
    with pytest.raises(
            ValueError,
            match=r"lacks 12 weight\(s\) of \['layers\.1'\].*"
            r'for backbone \(FusedVisionTransformer\)'):
        load_checkpoint(
            _build((32, 32)), _save(tmp_path / 'm.pth', missing), strict=False)
    # a Shrunk checkpoint into a plain ViT model: QU is extra
    shrunk = _build((32, 32), shrunk=True).state_dict()
    extra = dict(
        sd,
        **{k: v
           for k, v in shrunk.items() if k.startswith('backbone.qu.')})
    with pytest.raises(ValueError, match=r"does not have, of \['qu'\]"):
        load_checkpoint(
            _build((32, 32)), _save(tmp_path / 'e.pth', extra), strict=False)
    head_only = {k: v for k, v in sd.items() if k.startswith('decode_head.')}
    with pytest.raises(ValueError, match='no weights for backbone'):
        load_checkpoint(
            _build((32, 32)),
            _save(tmp_path / 'h.pth', head_only),
            strict=False)
    # the backbone loaded on its own is an explicit call: not checked
    result = _build((32, 32)).backbone.load_state_dict({}, strict=False)
    assert 'pos_embed' in result.missing_keys


def test_resume_restores_every_tensor_at_another_crop(tmp_path):
    """``--resume`` goes through Runner.load_checkpoint too: a run saved at
    32x32 resumed by a config at 48x64."""
    import cv2
    import numpy as np
    from mmengine.runner import Runner
    for folder in ('img', 'ann'):
        (tmp_path / 'data' / folder).mkdir(parents=True)
        cv2.imwrite(
            str(tmp_path / 'data' / folder / 'a.png'),
            np.zeros((32, 32, 3 if folder == 'img' else 1), np.uint8))

    def runner(size, work_dir, resume_from=None, optimizer='SGD', iters=1):
        return Runner(
            model=_cfg(size),
            work_dir=str(tmp_path / work_dir),
            optim_wrapper=dict(optimizer=dict(type=optimizer, lr=0.0)),
            train_cfg=dict(type='IterBasedTrainLoop', max_iters=iters),
            train_dataloader=dict(
                dataset=dict(
                    type='BaseSegDataset',
                    data_root=str(tmp_path / 'data'),
                    data_prefix=dict(img_path='img', seg_map_path='ann'),
                    img_suffix='.png',
                    seg_map_suffix='.png',
                    pipeline=[
                        dict(type='LoadImageFromFile'),
                        dict(type='LoadAnnotations'),
                        dict(type='PackSegInputs')
                    ]),
                sampler=dict(type='InfiniteSampler'),
                batch_size=1,
                num_workers=0),
            default_hooks=dict(
                checkpoint=dict(
                    type='CheckpointHook', by_epoch=False, interval=1)),
            custom_hooks=[dict(type='OptimStateCheckHook')],
            resume=resume_from is not None,
            load_from=resume_from,
            default_scope='mmseg',
            log_level='WARNING')

    first = runner((32, 32), 'a')
    first.train()
    second = runner((48, 64), 'b', str(tmp_path / 'a' / 'iter_1.pth'))
    second.load_or_resume()
    assert second.iter == 1
    torch.testing.assert_close(
        _scores(second.model.eval(), (48, 64)),
        _scores(first.model.eval(), (48, 64)))

    # AdamW's moments of pos_embed keep the 4x4 length: named before the
    # first step (which would stop inside torch), with what to do
    runner((32, 32), 'c', optimizer='AdamW').train()
    resumed = runner((48, 64),
                     'd',
                     str(tmp_path / 'c' / 'iter_1.pth'),
                     optimizer='AdamW',
                     iters=2)
    with pytest.raises(
            ValueError,
            match=r'backbone\.pos_embed \(exp_avg \(1, 17, 32\), '
            r'parameter \(1, 49, 32\)\).*use load_from'):
        resumed.train()
    # the same crop resumes and trains on
    runner((32, 32),
           'e',
           str(tmp_path / 'c' / 'iter_1.pth'),
           optimizer='AdamW',
           iters=2).train()


def test_the_package_tools_keep_the_recorded_grid(tmp_path):
    """drop_class_weights (the fine-tuning recipe) and get_state_dict (the
    export tool's loader) keep the grids, so a 4x4 model still loads into a 6x8
    one afterwards."""
    from mmseg_segvit.checkpoints import get_state_dict, load_weights_file
    from mmseg_segvit.tools import drop_class_weights
    source = _build((32, 32))
    src = _save(tmp_path / 'a.pth', source.state_dict())
    dst = str(tmp_path / 'b.pth')
    drop_class_weights.main([src, dst])
    target = _build((48, 64))
    load_checkpoint(target, dst, strict=False)
    expected = resize_pos_embed(source.backbone.pos_embed, (6, 8), (4, 4))
    assert torch.equal(target.backbone.pos_embed, expected)
    sd = get_state_dict(load_weights_file(src), src)
    assert sd._metadata['backbone'][GRIDS_KEY] == {'pos_embed': (4, 4)}
    other = _build((48, 64))
    other.load_state_dict(sd)
    assert torch.equal(other.backbone.pos_embed, expected)
