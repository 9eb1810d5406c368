"""Cross-attention variants of the ATM decoder come from mmseg's MODELS."""
import pytest
from fixtures import feature_maps, tiny_head
from mmseg.registry import MODELS

from mmseg_segvit.models.layers import (ATMCrossAttention, ATMDecoderLayer,
                                        KMeansCrossAttention,
                                        build_cross_attention)


class _HardHeads(ATMCrossAttention):
    """A user's variant: q and k only learn through the mask."""
    mask_trains_qk = True


HARD_HEADS = 'TestHardHeadsCrossAttention'
MODELS.register_module(name=HARD_HEADS, module=_HardHeads, force=True)


def test_default_and_registered_variants_with_options():
    default = build_cross_attention(None, 32, 4, dropout=0.2)
    assert type(default) is ATMCrossAttention
    assert default.num_heads == 4 and default.attn_drop.p == 0.2
    assert default.q.bias is not None  # qkv_bias defaults to True
    kmeans = build_cross_attention(
        dict(type='KMeansCrossAttention', update='sum', qkv_bias=False),
        32,
        4,
        dropout=0.1)
    assert type(kmeans) is KMeansCrossAttention
    assert kmeans.update == 'sum' and kmeans.q.bias is None
    # the class itself works as type, as in any mmengine config
    assert type(
        build_cross_attention(dict(type=KMeansCrossAttention), 32, 4,
                              0.1)) is KMeansCrossAttention


@pytest.mark.parametrize('cfg, match', [
    (dict(type='Sinkhorn'), r"'Sinkhorn' is not in mmseg's MODELS"),
    (dict(update='sum'), r'type None is not in mmseg'),
    (dict(type='KMeansCrossAttention',
          num_heads=8), r'sets num_heads=8 but the decoder has num_heads=4'),
])
def test_bad_configs_are_named(cfg, match):
    with pytest.raises(ValueError, match=match):
        ATMDecoderLayer(32, 4, cross_attn_cfg=cfg)


def test_state_dict_keys_do_not_depend_on_the_variant():
    softmax = ATMDecoderLayer(32, 4)
    kmeans = ATMDecoderLayer(
        32, 4, cross_attn_cfg=dict(type='KMeansCrossAttention'))
    assert softmax.state_dict().keys() == kmeans.state_dict().keys()
    assert 'multihead_attn.q.weight' in softmax.state_dict()


def test_a_registered_variant_runs_in_the_head():
    head = tiny_head(
        num_classes=3, num_layers=1,
        cross_attn_cfg=dict(type=HARD_HEADS)).eval()
    assert all(
        type(layer.multihead_attn) is _HardHeads for decoder in head.decoders
        for layer in decoder.layers)
    cls_logits, masks = head(feature_maps(batch=1))
    assert cls_logits.shape == (3, 1, 3, 4)
    assert masks.shape == (3, 1, 3, 4, 6)
    # its mask_trains_qk asks for every layer supervised, as k-means does
    with pytest.raises(ValueError, match='_HardHeads .*per_layer'):
        tiny_head(num_layers=2, cross_attn_cfg=dict(type=HARD_HEADS))


def test_the_cross_attention_is_chosen_by_cross_attn_cfg():
    with pytest.raises(TypeError, match='cross_attn'):
        tiny_head(cross_attn='kmeans')
    head = tiny_head(cross_attn_cfg=dict(type='ATMCrossAttention'))
    assert type(head.decoders[0].layers[0].multihead_attn) is \
        ATMCrossAttention


def test_a_registered_module_that_is_no_cross_attention_is_refused():
    with pytest.raises(
            ValueError,
            match="cross_attn_cfg type 'Conv2d' is "
            'not an ATMCrossAttention'):
        tiny_head(cross_attn_cfg=dict(type='Conv2d'))
