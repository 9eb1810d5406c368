"""FusedVisionTransformer: mmseg's VisionTransformer with fused attention,
same weights, same outputs and gradients, same per-layer settings."""
import torch
from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS

from mmseg_segvit.models.layers import FusedMultiheadAttention
VIT = dict(
    img_size=(32, 48),
    patch_size=8,
    embed_dims=32,
    num_layers=2,
    num_heads=4,
    out_indices=[0, 1],
    final_norm=False,
    with_cls_token=False)


def test_fused_vit_matches_mmseg_vit_and_loads_its_weights():
    ref = VisionTransformer(**VIT)
    fused = MODELS.build(dict(type='FusedVisionTransformer', **VIT))
    fused.load_state_dict(ref.state_dict())  # strict: same keys
    assert all(
        isinstance(layer.attn, FusedMultiheadAttention)
        for layer in fused.layers)
    ref.eval()
    fused.eval()
    x = torch.randn(2, 3, 32, 48, requires_grad=True)
    outs_ref, outs_fused = ref(x), fused(x)
    for a, b in zip(outs_ref, outs_fused):
        assert a.shape == (2, 32, 4, 6)
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    g_ref = torch.autograd.grad(outs_ref[-1].sum(), x)[0]
    g_fused = torch.autograd.grad(outs_fused[-1].sum(), x)[0]
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-4, atol=1e-5)


def test_fused_vit_can_be_switched_off():
    vit = MODELS.build(
        dict(type='FusedVisionTransformer', fused_attn=False, **VIT))
    assert type(vit.layers[0].attn) is MultiheadAttention
    assert vit.fused_attn is False


def test_fused_vit_layers_follow_mmseg_arguments():
    """Rebuilt layers carry mmseg's per-layer settings (drop-path rule,
    frozen parameters)."""
    cfg = dict(VIT, drop_path_rate=0.2, num_layers=3, out_indices=[2],
               frozen_exclude=['pos_embed'])
    ref = VisionTransformer(**cfg)
    fused = MODELS.build(dict(type='FusedVisionTransformer', **cfg))
    for a, b in zip(ref.layers, fused.layers):
        # same stochastic-depth rates (0 for the first layer: no module)
        assert getattr(a.ffn.dropout_layer, 'drop_prob', 0.0) == getattr(
            b.ffn.dropout_layer, 'drop_prob', 0.0)
        assert repr(a.ffn.layers) == repr(b.ffn.layers)
        assert a.attn.attn.dropout == b.attn.attn.dropout
    assert [p.requires_grad for p in ref.parameters()] == [
        p.requires_grad for p in fused.parameters()]
