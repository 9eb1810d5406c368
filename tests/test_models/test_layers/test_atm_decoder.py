"""ATMDecoderLayer and ATMDecoder: parameter names, post-norm, per-layer
outputs and where the attention masks are computed."""
import pytest
import torch

from mmseg_segvit.models.layers import ATMDecoder, ATMDecoderLayer


def test_decoder_layer_matches_torch_layer_names_and_post_norm():
    layer = ATMDecoderLayer(32, num_heads=4).eval()
    names = {n.split('.')[0] for n, _ in layer.named_parameters()}
    assert names == {
        'self_attn', 'multihead_attn', 'linear1', 'linear2', 'norm1',
        'norm2', 'norm3'
    }
    q, t = torch.randn(2, 5, 32), torch.randn(2, 9, 32)
    out, mask = layer(q, t)
    # post-norm: the output is the output of a LayerNorm
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 5), atol=1e-5,
                               rtol=0)
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
