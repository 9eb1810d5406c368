"""The ShrunkViT backbone (SegViT v2's Shrunk) on tiny sizes: token counts, the
QU map, equality with the plain ViT before the QD layer, checkpoints, gradients
and errors."""
import math

import pytest
import torch
from fixtures import tiny_shrunk_vit, tiny_vit_cfg
from mmseg.models.backbones.vit import VisionTransformer
from mmseg.registry import MODELS

from mmseg_segvit.models import QDEncoderLayer, ShrunkViT

DIMS = tiny_vit_cfg()['embed_dims']

# --- ShrunkViT ------------------------------------------------------------


def _token_counts(model, img):
    """Number of tokens entering each layer."""
    counts = {}
    hooks = [
        layer.register_forward_pre_hook(
            lambda m, args, i=i: counts.__setitem__(i, args[0].shape[1]))
        for i, layer in enumerate(model.layers)
    ]
    model(img)
    for h in hooks:
        h.remove()
    return [counts[i] for i in range(len(model.layers))]


@pytest.mark.parametrize('size, grid', [((64, 80), (8, 10)),
                                        ((264, 328), (33, 41)),
                                        ((60, 70), (8, 9))])
def test_qd_quarters_the_token_count(size, grid):
    model = tiny_shrunk_vit().eval()
    with torch.no_grad():
        counts = _token_counts(model, torch.randn(1, 3, *size))
    full = grid[0] * grid[1]
    quarter = math.ceil(grid[0] / 2) * math.ceil(grid[1] / 2)
    # layers 0..2 see the full grid (layer 2 is QD), layer 3 the quarter
    assert counts == [full, full, full, quarter]
    if grid == (8, 10):
        assert quarter * 4 == full


@pytest.mark.parametrize('size', [(64, 64), (64, 80), (264, 328)])
def test_shrunk_vit_returns_the_qu_map_on_the_patch_grid(size):
    model = tiny_shrunk_vit().eval()
    h, w = math.ceil(size[0] / 8), math.ceil(size[1] / 8)
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
        assert len(out) == 1 and out[0].shape == (2, 16, h, w)
        model.return_levels = True
        levels = model(torch.randn(2, 3, *size))
    assert [t.shape
            for t in levels] == [(2, DIMS, h, w),
                                 (2, DIMS, math.ceil(h / 2), math.ceil(w / 2)),
                                 (2, 16, h, w)]


def test_shrunk_vit_matches_the_plain_vit_before_the_qd_layer():
    """Plain ViT weights load as they are; layers before QD are the plain
    ViT's."""
    plain = VisionTransformer(**tiny_vit_cfg())
    plain.init_weights()
    plain.eval()
    model = tiny_shrunk_vit(return_levels=True).eval()
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(
        k.startswith('qu.') for k in result.missing_keys)
    img = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(img)[0], plain(img)[0])


def test_shrunk_vit_loads_a_pretrained_plain_vit_checkpoint(tmp_path):
    plain = VisionTransformer(**tiny_vit_cfg())
    plain.init_weights()
    path = str(tmp_path / 'vit.pth')
    torch.save(plain.state_dict(), path)
    model = MODELS.build(
        dict(type='ShrunkViT', qd_index=2, pretrained=path, **tiny_vit_cfg()))
    model.init_weights()
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)
    assert isinstance(model.layers[2], QDEncoderLayer)
    assert model.qu.q.weight.std() > 0.5  # QU initialised, not loaded


def test_shrunk_vit_state_dict_is_the_plain_one_plus_qu():
    plain_keys = set(VisionTransformer(**tiny_vit_cfg()).state_dict())
    keys = set(tiny_shrunk_vit().state_dict())
    assert {k for k in keys if not k.startswith('qu.')} == plain_keys
    assert 'qu.q.weight' in keys
    assert tiny_shrunk_vit().qu.q.weight.shape == (8 * 8, 16
                                                   )  # img_size / patch


def test_shrunk_vit_gradients_reach_every_used_parameter():
    model = tiny_shrunk_vit().train()
    model(torch.randn(2, 3, 40, 56))[0].square().mean().backward()
    unused = {'cls_token'}  # dropped before the layers
    for name, param in model.named_parameters():
        if name in unused:
            continue
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_shrunk_vit_with_cp_gives_the_same_values_and_gradients():
    outs = []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = tiny_shrunk_vit(
            with_cp=with_cp,
            drop_path_rate=0.0,
            qu_cfg=dict(embed_dims=16, num_heads=2, dropout=0.0)).train()
        assert all(layer.with_cp == with_cp for layer in model.layers)
        img = torch.randn(
            2, 3, 40, 56, generator=torch.Generator().manual_seed(1))
        out = model(img)[0]
        out.square().mean().backward()
        outs.append((out, model.layers[2].attn.attn.in_proj_weight.grad,
                     model.layers[0].ffn.layers[1].weight.grad,
                     model.qu.q.weight.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)


def test_qd_layer_has_the_drop_path_rate_of_its_depth():
    model = tiny_shrunk_vit(drop_path_rate=0.3)
    rates = torch.linspace(0, 0.3, 4)
    for i, layer in enumerate(model.layers):
        drop = getattr(layer.ffn.dropout_layer, 'drop_prob', 0.0)
        assert drop == pytest.approx(rates[i].item())


def test_shrunk_vit_with_a_class_token():
    model = tiny_shrunk_vit(with_cls_token=True, return_levels=True).eval()
    with torch.no_grad():
        counts = _token_counts(model, torch.randn(1, 3, 40, 56))
        out = model(torch.randn(1, 3, 40, 56))
    assert counts == [1 + 35, 1 + 35, 1 + 35, 1 + 12]
    assert [t.shape[-2:] for t in out] == [(5, 7), (3, 4), (5, 7)]


@pytest.mark.parametrize('kwargs, match', [
    (dict(qd_index=4), 'qd_index'),
    (dict(out_indices=[3, 1]), 'increasing'),
    (dict(out_indices=[1, 4]), 'increasing'),
    (dict(output_cls_token=True, with_cls_token=True), 'output_cls_token'),
])
def test_shrunk_vit_errors_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_shrunk_vit(**kwargs)


def test_shrunk_vit_is_registered():
    assert MODELS.get('ShrunkViT') is ShrunkViT


@pytest.mark.parametrize('unknown', ['num_layer', 'in_channels'])
def test_shrunk_vit_refuses_unknown_qu_settings(unknown):
    qu_cfg = dict(embed_dims=16, num_heads=2, **{unknown: 1})
    with pytest.raises(
            ValueError, match=rf"qu_cfg has keys .*\['{unknown}'\]"):
        tiny_shrunk_vit(qu_cfg=qu_cfg)
