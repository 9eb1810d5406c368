"""ATMLoss takes the class count and the number of supervised outputs from
ATMHead; the BaseDecodeHead arguments ATMHead has no use for."""
import glob
import os.path as osp

import pytest
import torch
from fixtures import REPO, data_samples, feature_maps, meta_head, tiny_head
from mmengine.config import Config
from mmseg.registry import MODELS

from mmseg_segvit.models import ATMLoss

CONFIGS = sorted(
    glob.glob(
        osp.join(REPO, 'configs', 'segvit', '**', '*.py'), recursive=True))


@pytest.mark.parametrize(
    'kwargs, outputs',
    [
        (dict(), 3),  # cumulative: one output per stage
        (dict(use_stages=2), 2),
        (dict(mask_mode='per_layer'), 6),  # 3 stages x 2 layers
        (dict(mask_mode='per_layer', num_layers=1), 3),
        (dict(
            cross_attn_cfg=dict(type='KMeansCrossAttention'),
            mask_mode='per_layer'), 6),
    ])
def test_the_loss_reads_the_class_count_and_outputs_of_the_head(
        kwargs, outputs):
    head = tiny_head(num_classes=4, **kwargs)
    assert head.num_outputs == outputs
    cls_logits, mask_logits = head(feature_maps(batch=2))
    assert cls_logits.shape == (outputs, 2, 4, 5)
    losses = head.loss_by_feat((cls_logits, mask_logits),
                               data_samples(torch.randint(0, 4, (2, 8, 12))))
    # one loss_ce per output: the last plain, the others numbered
    assert sorted(k for k in losses if k.startswith('loss_ce')) == sorted(
        ['loss_ce'] + [f'loss_ce_{i}' for i in range(outputs - 1)])


def test_loss_settings_reach_the_loss():
    head = tiny_head(
        num_classes=4,
        mask_mode='per_layer',
        loss_decode=dict(type='ATMLoss', mask_weight=5.0))
    assert head.loss_decode.mask_weight == 5.0


def test_the_class_count_and_outputs_are_no_loss_settings():
    """They are facts of the head: a config cannot state them twice."""
    for key in ('num_classes', 'dec_layers'):
        with pytest.raises(TypeError, match=f'ATMLoss has no setting {key}'):
            MODELS.build(dict(type='ATMLoss', **{key: 4}))


def test_a_loss_on_its_own_takes_the_counts_from_the_logits():
    loss = ATMLoss()
    for outputs, classes in ((1, 3), (4, 6)):
        label = torch.randint(0, classes, (2, 8, 8))
        losses = loss(
            torch.randn(outputs, 2, classes, classes + 1),
            torch.randn(outputs, 2, classes, 4, 4), label)
        assert len(losses) == 3 * outputs
        assert all(torch.isfinite(v) for v in losses.values())


def test_the_dropped_loss_name_argument_is_refused():
    with pytest.raises(TypeError, match='loss_name'):
        MODELS.build(dict(type='ATMLoss', loss_name='loss_atm'))


def test_a_stock_segmenter_head_dict_swaps_to_atm_head():
    """MMSeg's SegmenterMaskHead dict with the type changed: channels equal to
    embed_dims and dropout_ratio are accepted and have no effect."""
    for dropout_ratio in (0.0, 0.1):
        head = tiny_head(channels=32, dropout_ratio=dropout_ratio)
        assert head.channels == 32
        assert head.dropout is None  # no classifier dropout module
        assert head.init_cfg is None
    assert not any('dropout' == name for name, _ in head.named_modules())


@pytest.mark.parametrize('kwargs, match', [
    (dict(channels=512), r'decode_head\.channels=512 but ATMHead.s width is '
     r'decode_head\.embed_dims=32: remove channels'),
    (dict(dropout_ratio=0.5),
     r'decode_head\.dropout_ratio=0\.5 .*set decode_head\.dropout'),
    (dict(init_cfg=dict(type='Normal', std=0.01)),
     r'decode_head\.init_cfg=.*is not used.*load_from'),
    (dict(init_cfg=dict(type='Pretrained', checkpoint='head.pth')),
     r'decode_head\.init_cfg=.*Remove it'),
])
def test_unused_base_arguments_that_would_matter_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_head(**kwargs)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_configs_state_the_class_count_and_outputs_once(path):
    head = Config.fromfile(path, import_custom_modules=False).model.decode_head
    loss = head.get('loss_decode', {})
    assert 'num_classes' not in loss and 'dec_layers' not in loss
    built = meta_head(head)
    assert built.num_outputs == (
        built.use_stages * head.get('num_layers', 3)
        if built.mask_mode == 'per_layer' else built.use_stages)
