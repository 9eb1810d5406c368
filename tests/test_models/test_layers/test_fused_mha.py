"""Fused (scaled-dot-product) multi-head attention against mmcv's and torch's
explicit paths, and the global switch set_fused_attn."""
import pytest
import torch
from mmcv.cnn.bricks.transformer import MultiheadAttention

from mmseg_segvit.models.layers import (FusedMultiheadAttention,
                                        ViTEncoderLayer, packed_self_attention,
                                        set_fused_attn)


def test_torch_self_attention_without_weights_equals_with_weights():
    # ATM query self-attention passes need_weights=False, which sends
    # F.multi_head_attention_forward to F.scaled_dot_product_attention.
    mha = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x = torch.randn(2, 7, 32)
    with_weights = mha(x, x, x, need_weights=True)[0]
    fused = mha(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(fused, with_weights, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('batch_first', [True, False])
def test_fused_mmcv_attention_matches_mmcv(batch_first):
    ref = MultiheadAttention(32, 4, batch_first=batch_first).eval()
    fused = FusedMultiheadAttention(32, 4, batch_first=batch_first).eval()
    fused.load_state_dict(ref.state_dict())  # strict: same keys
    x = torch.randn(2, 9, 32) if batch_first else torch.randn(9, 2, 32)
    pos = torch.randn_like(x)
    torch.testing.assert_close(
        fused(x, query_pos=pos), ref(x, query_pos=pos), rtol=1e-5, atol=1e-6)


def test_fused_attn_global_default_applies_only_when_set():
    """Like timm's set_fused_attn: a default for modules built later."""
    assert ViTEncoderLayer(32, 4, 64).fused_attn
    try:
        set_fused_attn(False)
        assert type(ViTEncoderLayer(32, 4, 64).attn) is MultiheadAttention
        assert ViTEncoderLayer(32, 4, 64, fused_attn=True).fused_attn
    finally:
        set_fused_attn(True)
    assert isinstance(ViTEncoderLayer(32, 4, 64).attn, FusedMultiheadAttention)


def _backward_ops(fn):
    with torch.profiler.profile() as prof:
        fn().sum().backward()
    return [e.name for e in prof.events()]


def test_packed_self_attention_equals_torch_and_skips_its_copies():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(
        32, 4, dropout=0.1, batch_first=True).eval()
    x = torch.randn(2, 7, 32, requires_grad=True)
    ref = mha(x, x, x, need_weights=False)[0]
    (ref_grad, ) = torch.autograd.grad(ref.square().sum(), x)
    out = packed_self_attention(mha, x)
    (grad, ) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)
    # torch's packed path selects q, k, v (three zero-filled gradients in
    # backward); the packed one takes views and stacks their gradients once
    assert 'aten::select_backward' in _backward_ops(
        lambda: mha(x, x, x, need_weights=False)[0])
    assert 'aten::select_backward' not in _backward_ops(
        lambda: packed_self_attention(mha, x))
    # training: dropout on the attention weights, as torch's module
    mha.train()
    assert not torch.allclose(packed_self_attention(mha, x), out)


@pytest.mark.parametrize('batch_first', [True, False])
def test_fused_mmcv_self_attention_takes_the_packed_path(batch_first):
    ref = MultiheadAttention(32, 4, batch_first=batch_first).eval()
    fused = FusedMultiheadAttention(32, 4, batch_first=batch_first).eval()
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(2, 9, 32) if batch_first else torch.randn(9, 2, 32)
    x.requires_grad_(True)
    torch.testing.assert_close(fused(x), ref(x), rtol=1e-5, atol=1e-6)
    assert 'aten::select_backward' not in _backward_ops(lambda: fused(x))
