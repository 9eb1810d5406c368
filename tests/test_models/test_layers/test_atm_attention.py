import pytest
import torch

from mmseg_segvit.models.layers import (ATMCrossAttention, ATMDecoder,
                                        ATMDecoderLayer)


def test_cross_attention_mask_is_head_mean_of_scaled_similarity():
    attn = ATMCrossAttention(32, num_heads=4, attn_drop=0.0).eval()
    q, k = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    out, mask = attn(q, k)
    assert out.shape == (2, 5, 32) and mask.shape == (2, 5, 7)
    qh = attn.q(q).reshape(2, 5, 4, 8).transpose(1, 2)
    kh = attn.k(k).reshape(2, 7, 4, 8).transpose(1, 2)
    sim = qh @ kh.transpose(-2, -1) / 8**0.5
    torch.testing.assert_close(mask, sim.mean(1))
    vh = attn.v(k).reshape(2, 7, 4, 8).transpose(1, 2)
    expected = (sim.softmax(-1) @ vh).transpose(1, 2).reshape(2, 5, 32)
    torch.testing.assert_close(out, attn.proj(expected))


def test_cross_attention_without_mask():
    attn = ATMCrossAttention(16, num_heads=2)
    out, mask = attn(torch.randn(1, 3, 16), torch.randn(1, 4, 16),
                     need_mask=False)
    assert mask is None and out.shape == (1, 3, 16)


def test_heads_must_divide_dims():
    with pytest.raises(ValueError, match='divisible'):
        ATMCrossAttention(30, num_heads=4)


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
