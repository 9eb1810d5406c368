"""ATMCrossAttention: the attention mask of the paper (head mean of the
scaled similarity), and the fused path that skips it when not needed."""
import pytest
import torch

from mmseg_segvit.models.layers import ATMCrossAttention


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
    out, mask = attn(
        torch.randn(1, 3, 16), torch.randn(1, 4, 16), need_mask=False)
    assert mask is None and out.shape == (1, 3, 16)


def test_heads_must_divide_dims():
    with pytest.raises(ValueError, match='divisible'):
        ATMCrossAttention(30, num_heads=4)


def test_cross_attention_fused_path_matches_explicit():
    attn = ATMCrossAttention(32, num_heads=4).eval()
    q, k = torch.randn(2, 5, 32), torch.randn(2, 11, 32)
    explicit, mask = attn(q, k, need_mask=True)
    fused, none = attn(q, k, need_mask=False)
    assert none is None and mask.shape == (2, 5, 11)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)


def test_cross_attention_fused_path_gradients_match():
    attn = ATMCrossAttention(16, num_heads=2).eval()
    q = torch.randn(1, 3, 16, requires_grad=True)
    k = torch.randn(1, 6, 16, requires_grad=True)
    grads = []
    for need_mask in (True, False):
        out, _ = attn(q, k, need_mask=need_mask)
        grads.append(torch.autograd.grad(out.square().sum(), (q, k)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
