"""ATMDecoderLayer and ATMDecoder: parameter names, post-norm, per-layer
outputs and where the attention masks are computed."""
import pytest
import torch

from mmseg_segvit.models.layers import ATMDecoder, ATMDecoderLayer


def test_decoder_layer_matches_torch_layer_names_and_post_norm():
    layer = ATMDecoderLayer(32, num_heads=4).eval()
    names = {n.split('.')[0] for n, _ in layer.named_parameters()}
    assert names == {
        'self_attn', 'multihead_attn', 'linear1', 'linear2', 'norm1', 'norm2',
        'norm3'
    }
    q, t = torch.randn(2, 5, 32), torch.randn(2, 9, 32)
    out, mask = layer(q, t)
    # post-norm: the output is the output of a LayerNorm
    torch.testing.assert_close(
        out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    assert mask.shape == (2, 5, 9)


def test_decoder_returns_last_or_all_layers():
    dec = ATMDecoder(3, embed_dims=32, num_heads=4).eval()
    q, t = torch.randn(1, 4, 32), torch.randn(1, 6, 32)
    qs, masks = dec(q, t)
    assert len(qs) == len(masks) == 1
    qs_all, masks_all = dec(q, t, all_layers=True)
    assert len(qs_all) == len(masks_all) == 3
    torch.testing.assert_close(qs_all[-1], qs[0])
    torch.testing.assert_close(masks_all[-1], masks[0])
    with pytest.raises(ValueError):
        ATMDecoder(0, embed_dims=32, num_heads=4)


def test_decoder_masks_only_where_used():
    dec = ATMDecoder(3, embed_dims=32, num_heads=4).eval()
    q, t = torch.randn(1, 4, 32), torch.randn(1, 6, 32)
    calls = []
    for layer in dec.layers:
        layer.multihead_attn.register_forward_hook(
            lambda m, args, kwargs, out: calls.append(out[1] is not None),
            with_kwargs=True)
    dec(q, t)
    assert calls == [False, False, True]


DEFAULT_KEYS = sorted(ATMDecoderLayer(32, num_heads=4).state_dict())


@pytest.mark.parametrize('kwargs', [
    dict(pre_norm=True),
    dict(act_cfg=dict(type='GELU')),
    dict(norm_cfg=dict(type='LN', eps=1e-6), pre_norm=True),
])
def test_decoder_layer_settings_keep_the_state_dict_keys(kwargs):
    """Checkpoint converters map torch's layer key by key: the settings change
    the computation, never the parameter names or shapes."""
    layer = ATMDecoderLayer(32, num_heads=4, **kwargs)
    default = ATMDecoderLayer(32, num_heads=4).state_dict()
    state = layer.state_dict()
    assert sorted(state) == DEFAULT_KEYS
    assert all(state[k].shape == default[k].shape for k in state)
    layer.load_state_dict(default)  # strict


def _branches(layer, q, t, act):
    """The three residual branches of a layer, written out."""

    def self_attn(x):
        return layer.self_attn(x, x, x, need_weights=False)[0]

    def ffn(x):
        return layer.linear2(act(layer.linear1(x)))

    return self_attn, lambda x: layer.multihead_attn(x, t), ffn


def test_pre_norm_computes_the_pre_norm_order():
    torch.manual_seed(0)
    layer = ATMDecoderLayer(
        32,
        num_heads=4,
        pre_norm=True,
        act_cfg=dict(type='GELU'),
        norm_cfg=dict(type='LN', eps=1e-6)).eval()
    assert layer.norm1.eps == 1e-6
    q, t = torch.randn(2, 5, 32), torch.randn(2, 9, 32)
    self_attn, cross_attn, ffn = _branches(layer, q, t,
                                           torch.nn.functional.gelu)
    x = q + self_attn(layer.norm1(q))
    cross, mask = cross_attn(layer.norm2(x))
    x = x + cross
    expected = x + ffn(layer.norm3(x))
    out, got_mask = layer(q, t)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(got_mask, mask)
    # pre-norm leaves the residual stream unnormalised
    assert out.mean(-1).abs().max() > 1e-3


def test_post_norm_is_the_default_order():
    torch.manual_seed(0)
    layer = ATMDecoderLayer(32, num_heads=4).eval()
    q, t = torch.randn(2, 5, 32), torch.randn(2, 9, 32)
    self_attn, cross_attn, ffn = _branches(layer, q, t,
                                           torch.nn.functional.relu)
    x = layer.norm1(q + self_attn(q))
    cross, mask = cross_attn(x)
    x = layer.norm2(x + cross)
    expected = layer.norm3(x + ffn(x))
    out, got_mask = layer(q, t)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(got_mask, mask)
