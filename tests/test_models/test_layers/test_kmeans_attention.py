"""KMeansCrossAttention (the k-means variant of ATM cross-attention):

hard assignment, query updates, gradients and the decoder-layer switch.
"""
import pytest
import torch
from mmseg.registry import MODELS

from mmseg_segvit.models.layers import (ATMCrossAttention, ATMDecoderLayer,
                                        KMeansCrossAttention)

KMEANS = dict(type='KMeansCrossAttention')


def _pair(update='mean'):
    """A k-means and a softmax cross-attention with the same weights."""
    kmeans = KMeansCrossAttention(32, num_heads=4, update=update).eval()
    softmax = ATMCrossAttention(32, num_heads=4).eval()
    softmax.load_state_dict(kmeans.state_dict())
    return kmeans, softmax


def test_assignment_is_a_partition_of_the_tokens():
    affinity = torch.randn(2, 5, 40)
    one_hot = KMeansCrossAttention.assign(affinity)
    assert one_hot.shape == (2, 5, 40)
    assert set(one_hot.unique().tolist()) <= {0.0, 1.0}
    # every token belongs to exactly one query ...
    torch.testing.assert_close(one_hot.sum(1), torch.ones(2, 40))
    # ... the one of highest affinity
    assert torch.equal(one_hot.argmax(1), affinity.argmax(1))
    assert not one_hot.requires_grad


def test_assignment_breaks_ties_to_one_query():
    one_hot = KMeansCrossAttention.assign(torch.zeros(1, 3, 4))
    torch.testing.assert_close(one_hot.sum(1), torch.ones(1, 4))
    assert one_hot[0, 0].tolist() == [1.0] * 4


def test_same_parameters_as_atm_cross_attention():
    kmeans, softmax = _pair()
    assert kmeans.state_dict().keys() == softmax.state_dict().keys()
    # checkpoints load both ways, strictly
    kmeans.load_state_dict(softmax.state_dict(), strict=True)


def test_mask_is_the_atm_mask_and_shapes():
    kmeans, softmax = _pair()
    q, t = torch.randn(2, 5, 32), torch.randn(2, 9, 32)
    out, mask = kmeans(q, t)
    assert out.shape == (2, 5, 32) and mask.shape == (2, 5, 9)
    torch.testing.assert_close(mask, softmax(q, t)[1])
    torch.testing.assert_close(mask, kmeans.affinity(q, t))
    out, mask = kmeans(q, t, need_mask=False)
    assert mask is None and out.shape == (2, 5, 32)


@pytest.mark.parametrize('update', ['mean', 'sum'])
def test_queries_are_updated_from_their_tokens(update):
    kmeans, _ = _pair(update)
    q, t = torch.randn(2, 6, 32), torch.randn(2, 30, 32)
    out, mask = kmeans(q, t)
    owner = mask.argmax(1)  # (B, N)
    values = kmeans.v(t)
    expected = torch.zeros(2, 6, 32)
    for b in range(2):
        for i in range(6):
            mine = values[b, owner[b] == i]
            if len(mine):
                expected[b, i] = mine.mean(0) if update == 'mean' else \
                    mine.sum(0)
    torch.testing.assert_close(out, kmeans.proj(expected))


def test_value_defaults_to_key_and_empty_queries_get_nothing():
    kmeans, _ = _pair()
    q, t = torch.randn(1, 6, 32), torch.randn(1, 4, 32)
    torch.testing.assert_close(kmeans(q, t)[0], kmeans(q, t, t)[0])
    out, mask = kmeans(q, t, torch.zeros_like(t))
    # Zero values: a query with tokens gets the mean of v(0) = v's bias, one
    # without (6 queries, 4 tokens: at least 2) gets a zero update.
    has_tokens = KMeansCrossAttention.assign(mask).sum(-1, keepdim=True) > 0
    assert (~has_tokens).sum() >= 2
    expected = kmeans.proj(has_tokens * kmeans.v.bias)
    torch.testing.assert_close(out, expected)


def test_gradients_finite_and_no_straight_through():
    kmeans = KMeansCrossAttention(32, num_heads=4)
    q = torch.randn(2, 5, 32, requires_grad=True)
    t = torch.randn(2, 16, 32, requires_grad=True)
    out, mask = kmeans(q, t)
    # Through the update only: the hard assignment passes no gradient, so
    # q and k (and the queries) receive none; v and proj do.
    out.square().sum().backward(retain_graph=True)
    assert kmeans.q.weight.grad is None and kmeans.k.weight.grad is None
    assert q.grad is None
    for p in (kmeans.v.weight, kmeans.proj.weight, t):
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # Through the supervised mask: q and k learn.
    (out.sum() + mask.sigmoid().sum()).backward()
    for name, p in kmeans.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert kmeans.q.weight.grad.abs().sum() > 0
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


def test_update_mode_is_checked_and_module_is_registered():
    with pytest.raises(ValueError, match='update'):
        KMeansCrossAttention(32, num_heads=4, update='median')
    attn = MODELS.build(
        dict(type='KMeansCrossAttention', embed_dims=16, num_heads=2))
    assert isinstance(attn, KMeansCrossAttention)


def test_fp32_accumulation_under_autocast():
    kmeans = KMeansCrossAttention(32, num_heads=4, update='sum').eval()
    q, t = torch.randn(1, 4, 32), torch.randn(1, 64, 32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out, mask = kmeans(q, t)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert mask.shape == (1, 4, 64)


def test_decoder_layer_switch_and_softmax_default_unchanged():
    assert type(ATMDecoderLayer(32, 4).multihead_attn) is ATMCrossAttention
    layer = ATMDecoderLayer(32, 4, cross_attn_cfg=KMEANS).eval()
    assert isinstance(layer.multihead_attn, KMeansCrossAttention)
    with pytest.raises(ValueError, match='cross_attn'):
        ATMDecoderLayer(32, 4, cross_attn_cfg=dict(type='Sinkhorn'))

    torch.manual_seed(1)
    default = ATMDecoderLayer(32, 4).eval()
    torch.manual_seed(1)
    softmax = ATMDecoderLayer(
        32, 4, cross_attn_cfg=dict(type='ATMCrossAttention')).eval()
    q, t = torch.randn(2, 5, 32), torch.randn(2, 9, 32)
    for a, b in zip(default(q, t), softmax(q, t)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # k-means on the same weights: same mask, different query update
    layer.load_state_dict(default.state_dict())
    out, mask = layer(q, t)
    out_softmax, mask_softmax = default(q, t)
    torch.testing.assert_close(mask, mask_softmax)
    assert out.shape == out_softmax.shape
    assert not torch.allclose(out, out_softmax)
