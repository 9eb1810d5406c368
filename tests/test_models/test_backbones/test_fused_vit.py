"""FusedVisionTransformer: mmseg's VisionTransformer with fused attention,
same weights, same outputs and gradients, same per-layer settings."""
import pytest
import torch
from fixtures import tiny_vit_cfg
from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS

from mmseg_segvit.models.layers import FusedMultiheadAttention

VIT = tiny_vit_cfg(
    img_size=(32, 48),
    num_layers=2,
    num_heads=4,
    out_indices=[0, 1],
    norm_cfg=dict(type='LN'))


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
    """Rebuilt layers carry mmseg's per-layer settings (drop-path rule, frozen
    parameters)."""
    cfg = dict(
        VIT,
        drop_path_rate=0.2,
        num_layers=3,
        out_indices=[2],
        frozen_exclude=['pos_embed'])
    ref = VisionTransformer(**cfg)
    fused = MODELS.build(dict(type='FusedVisionTransformer', **cfg))
    for a, b in zip(ref.layers, fused.layers):
        # same stochastic-depth rates (0 for the first layer: no module)
        assert getattr(a.ffn.dropout_layer, 'drop_prob',
                       0.0) == getattr(b.ffn.dropout_layer, 'drop_prob', 0.0)
        assert repr(a.ffn.layers) == repr(b.ffn.layers)
        assert a.attn.attn.dropout == b.attn.attn.dropout
    assert [p.requires_grad for p in ref.parameters()
            ] == [p.requires_grad for p in fused.parameters()]


def test_fused_vit_sincos_position_table():
    """pos_embed_init='sincos': MAE's 2D sine-cosine table on the patch
    grid (a zero row for the class token), same key and shape as mmseg's,
    fixed with pos_embed_trainable=False; the default stays mmseg's."""
    from mmseg_segvit.models.backbones import sincos_pos_embed
    default = MODELS.build(dict(type='FusedVisionTransformer', **VIT))
    default.init_weights()
    assert default.pos_embed.requires_grad
    assert default.pos_embed.std() < 0.05  # mmseg's trunc-normal(0.02)

    vit = MODELS.build(
        dict(
            type='FusedVisionTransformer',
            pos_embed_init='sincos',
            pos_embed_trainable=False,
            **VIT))
    assert set(vit.state_dict()) == set(default.state_dict())
    vit.init_weights()
    pos = vit.pos_embed
    assert pos.shape == (1, 1 + 4 * 6, 32) and not pos.requires_grad
    assert torch.equal(pos[0, 0], torch.zeros(32))
    # every token's row has norm sqrt(C / 2); all rows differ
    torch.testing.assert_close(pos[0, 1:].norm(dim=-1), torch.full((24, ),
                                                                   4.0))
    assert torch.cdist(pos[0, 1:], pos[0, 1:]).add(torch.eye(24)).min() > 0.1
    torch.testing.assert_close(pos, sincos_pos_embed((4, 6), 32))
    # row-major on the (4, 6) grid: token (r, c) -> 1 + 6 r + c; the first
    # sine channel is sin(row), the 9th sin(col) (frequency 1)
    table = pos[0, 1:].reshape(4, 6, 32)
    torch.testing.assert_close(table[:, 0, 0], torch.sin(torch.arange(4.)))
    torch.testing.assert_close(table[0, :, 8], torch.sin(torch.arange(6.)))
    # fixed: no gradient, and the optimiser has nothing to move
    vit.train()
    vit(torch.randn(1, 3, 32, 48))[-1].sum().backward()
    assert pos.grad is None


def test_fused_vit_sincos_table_yields_to_loaded_weights(tmp_path):
    """Weights given by init_cfg replace the sine-cosine start."""
    src = MODELS.build(dict(type='FusedVisionTransformer', **VIT))
    src.init_weights()
    path = tmp_path / 'vit.pth'
    torch.save(src.state_dict(), path)
    vit = MODELS.build(
        dict(
            type='FusedVisionTransformer',
            pos_embed_init='sincos',
            init_cfg=dict(type='Pretrained', checkpoint=str(path)),
            **VIT))
    vit.init_weights()
    assert torch.equal(vit.pos_embed, src.pos_embed)


def test_fused_vit_position_table_errors():
    with pytest.raises(ValueError, match='pos_embed_init must be one of'):
        MODELS.build(
            dict(
                type='FusedVisionTransformer', pos_embed_init='learned',
                **VIT))
    with pytest.raises(ValueError, match='embed_dims divisible by 4'):
        MODELS.build(
            dict(
                type='FusedVisionTransformer',
                pos_embed_init='sincos',
                **dict(VIT, embed_dims=30, num_heads=3)))
