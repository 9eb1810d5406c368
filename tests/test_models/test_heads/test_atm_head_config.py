"""Configuration mistakes give errors that name the setting."""
import pytest
import torch
from fixtures import tiny_segmentor, tiny_segmentor_cfg
from mmengine.config import ConfigDict
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS


def _build(**head_kwargs):
    cfg = ConfigDict(tiny_segmentor_cfg(**head_kwargs))
    return MODELS.build(cfg)


def _forward(model):
    return model(torch.randn(1, 3, 32, 32), mode='tensor')


def test_use_stages_beyond_the_backbone_outputs():
    cfg = ConfigDict(tiny_segmentor_cfg(use_stages=3))
    cfg.backbone.out_indices = [1, 2]  # two outputs, the head wants three
    model = MODELS.build(cfg)
    with pytest.raises(
            ValueError, match=r'use_stages=3.*backbone gives 2.*'
            r'out_indices'):
        _forward(model)


def test_use_stages_larger_than_in_index_fails_at_build():
    with pytest.raises(ValueError, match=r'use_stages \(4\)'):
        _build(use_stages=4, in_index=[0, 1, 2])


def test_embed_dims_not_divisible_by_num_heads_fails_at_build():
    with pytest.raises(
            ValueError, match=r'embed_dims \(30\).*num_heads \(4\)'):
        _build(embed_dims=30)


def test_in_channels_that_do_not_match_the_backbone():
    model = _build(in_channels=48)
    with pytest.raises(ValueError, match=r'48.*decode_head\.in_channels'):
        _forward(model)


def test_in_channels_list_shorter_than_use_stages_fails_at_build():
    with pytest.raises(ValueError, match='in_channels lists 2 stages'):
        _build(in_channels=[32, 32])


def test_checkpoint_with_another_class_count_is_refused(five_class_checkpoint):
    """What ``mim test --checkpoint`` (Runner.load_checkpoint) runs into."""
    _, path = five_class_checkpoint
    model = tiny_segmentor(num_classes=7)
    with pytest.raises(ValueError) as err:
        load_checkpoint(model, str(path), map_location='cpu')
    message = str(err.value)
    assert 'checkpoint has 5 classes' in message
    assert 'num_classes=7' in message
    assert 'decode_head.num_classes' in message
    assert 'mmseg_segvit.tools.drop_class_weights' in message
    # plain torch loading takes the same path
    with pytest.raises(ValueError, match='checkpoint has 5 classes'):
        model.load_state_dict(
            torch.load(path, weights_only=True)['state_dict'])
