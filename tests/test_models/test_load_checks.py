"""No silent partial loads: a checkpoint loaded into a whole model must fill
its ATM head (class tensors and ``fresh_modules`` aside) and the Shrunk model's
query up-sampling; our tools refuse files of another layout."""
import sys

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS
from official_checkpoints import (official_checkpoint, official_shrunk,
                                  shrunk_cfg, tiny_cfg)

from mmseg_segvit.checkpoints import ConversionError
from mmseg_segvit.models import load_checks
from mmseg_segvit.tools import convert_official_segvit, drop_class_weights


def _model(**head):
    cfg = ConfigDict(tiny_cfg())
    cfg.decode_head.update(head)
    return MODELS.build(cfg)


def _save(tmp_path, state_dict, name='ckpt.pth'):
    path = str(tmp_path / name)
    torch.save(dict(meta=dict(), state_dict=state_dict), path)
    return path


@pytest.fixture
def official_file(tmp_path):
    sd, _, _ = official_checkpoint()
    path = str(tmp_path / 'ade_51.3.pth')
    torch.save(dict(meta=dict(CLASSES=tuple('abcde')), state_dict=sd), path)
    return path


@pytest.fixture
def logged(monkeypatch):
    messages = []
    monkeypatch.setattr(load_checks, 'print_log',
                        lambda msg, **kwargs: messages.append(msg))
    return messages


def test_drop_class_weights_refuses_an_official_file(official_file, tmp_path,
                                                     monkeypatch):
    """The README's fine-tuning step on a released file not converted
    first: refused, naming the converter; nothing written."""
    out = tmp_path / 'out.pth'
    monkeypatch.setattr(sys, 'argv', ['x', official_file, str(out)])
    with pytest.raises(SystemExit) as err:
        drop_class_weights.main()
    message = str(err.value)
    assert f'{official_file} is an official SegViT checkpoint' in message
    assert 'convert_official_segvit' in message
    assert not out.exists()


@pytest.mark.parametrize('how', ['load_from', 'init_cfg'])
def test_loading_an_official_file_names_the_converter(official_file, how):
    model = _model()
    with pytest.raises(ValueError) as err:
        if how == 'load_from':  # what Runner.load_checkpoint does
            load_checkpoint(
                model, official_file, map_location='cpu', strict=False)
        else:
            model.init_cfg = dict(type='Pretrained', checkpoint=official_file)
            model.init_weights()
    message = str(err.value)
    assert 'official SegViT checkpoints' in message
    assert 'convert_official_segvit' in message


def test_init_model_refuses_an_official_file(official_file, tmp_path):
    """``mmseg.apis.init_model`` (the inferencer, atm_masks)."""
    from mmseg.apis import init_model
    config = str(tmp_path / 'tiny.py')
    Config(dict(model=tiny_cfg())).dump(config)
    with pytest.raises(ValueError, match='convert_official_segvit'):
        init_model(config, official_file, device='cpu')


def test_converter_refuses_a_converted_file(tmp_path):
    path = _save(tmp_path, _model().state_dict())
    with pytest.raises(
            ConversionError,
            match='already in the layout of '
            'mmseg_segvit.*needs no conversion'):
        convert_official_segvit.convert_file(path, str(tmp_path / 'x.pth'))


def test_missing_head_modules_are_refused_or_named(tmp_path, logged):
    """A checkpoint without decoders.2: an error naming it, unless
    ``fresh_modules`` asks for it; then the log names it."""
    source = _model()
    sd = {
        k: v
        for k, v in source.state_dict().items()
        if not k.startswith('decode_head.decoders.2.')
    }
    path = _save(tmp_path, sd)
    with pytest.raises(
            ValueError,
            match=r"lacks 44 weight\(s\) of \['decoders\.2'\].*"
            r'decode_head\.fresh_modules'):
        load_checkpoint(_model(), path, strict=False)
    assert not logged
    model = _model(fresh_modules=['decoders.2'])
    load_checkpoint(model, path, strict=False)
    assert logged == [
        'decode_head: decoders.2 not in the checkpoint: they start from '
        'their initialisation'
    ]
    torch.testing.assert_close(model.decode_head.decoders[1].state_dict(),
                               source.decode_head.decoders[1].state_dict())


def test_dropped_class_tensors_load_and_are_named(tmp_path, logged):
    weights, _ = drop_class_weights.drop_class_weights(_model().state_dict())
    load_checkpoint(_model(), _save(tmp_path, weights), strict=False)
    assert logged == [
        'decode_head: class_embed, q not in the checkpoint: they start '
        'from their initialisation'
    ]


def test_a_checkpoint_without_head_is_refused(tmp_path):
    sd = {
        k: v
        for k, v in _model().state_dict().items() if k.startswith('backbone.')
    }
    with pytest.raises(
            ValueError, match='no weights for decode_head.*model.pretrained'):
        load_checkpoint(_model(), _save(tmp_path, sd), strict=False)


def test_head_weights_of_other_shapes_or_extra_stages_are_refused(tmp_path):
    other = ConfigDict(tiny_cfg())
    other.decode_head.update(embed_dims=32)  # 16 in the model
    path = _save(tmp_path, MODELS.build(other).state_dict())
    with pytest.raises(
            ValueError,
            match=r'weights of other shapes: .*decode_head\.decoders\.0\.'
            r'layers\.0\.linear1\.weight: checkpoint \(128, 32\), model '
            r'\(64, 16\).*another decode_head'):
        load_checkpoint(_model(), path, strict=False)
    sd = _model().state_dict()
    sd['decode_head.decoders.3.layers.0.linear1.weight'] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"does not have, of \['decoders"):
        load_checkpoint(_model(), _save(tmp_path, sd), strict=False)


def test_fresh_modules_must_name_head_modules():
    with pytest.raises(
            ValueError, match=r"fresh_modules names \['decoder\.2'\]"):
        _model(fresh_modules=['decoder.2'])


def test_head_loaded_on_its_own_is_not_checked():
    model = _model()
    result = model.decode_head.load_state_dict({}, strict=False)
    assert 'q.weight' in result.missing_keys


def test_shrunk_model_without_qu_weights_is_refused(tmp_path):
    model = MODELS.build(shrunk_cfg())
    sd = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith('backbone.qu.')
    }
    with pytest.raises(
            ValueError,
            match=r'lacks .* weight\(s\) of .* for backbone\.qu .*'
            'model.pretrained'):
        load_checkpoint(
            MODELS.build(shrunk_cfg()), _save(tmp_path, sd), strict=False)
    # the full converted official file loads
    official, _, _ = official_shrunk()
    converted, _ = convert_official_segvit.convert_official_state_dict(
        official, model)
    load_checkpoint(
        MODELS.build(shrunk_cfg()),
        _save(tmp_path, converted, 'full.pth'),
        strict=True)
