"""QD layer, QU module and the ShrunkViT backbone on tiny sizes."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmseg.models.backbones.vit import (TransformerEncoderLayer,
                                        VisionTransformer)
from mmseg.registry import MODELS

from mmseg_segvit.models import (QDEncoderLayer, QueryUpsample, ShrunkViT,
                                 stride2_grid_tokens)

DIMS = 32


def _vit_cfg(**kwargs):
    cfg = dict(
        img_size=(64, 64),
        patch_size=8,
        embed_dims=DIMS,
        num_layers=4,
        num_heads=2,
        out_indices=[1, 3],
        with_cls_token=False,
        final_norm=False,
        norm_cfg=dict(type='LN', eps=1e-6))
    cfg.update(kwargs)
    return cfg


def _shrunk(**kwargs):
    cfg = _vit_cfg(qd_index=2, qu_cfg=dict(embed_dims=16, num_heads=2))
    cfg.update(kwargs)
    model = MODELS.build(dict(type='ShrunkViT', **cfg))
    model.init_weights()
    return model


def _layer_pair():
    """A plain encoder layer and a QD layer with the same weights."""
    kwargs = dict(embed_dims=DIMS, num_heads=2, feedforward_channels=64)
    plain = TransformerEncoderLayer(**kwargs).eval()
    qd = QDEncoderLayer(**kwargs).eval()
    qd.load_state_dict(plain.state_dict())
    return plain, qd


# --- QD -------------------------------------------------------------------


@pytest.mark.parametrize('grid, sub', [((4, 6), (2, 3)), ((33, 41), (17, 21)),
                                       ((1, 5), (1, 3)), ((3, 3), (2, 2))])
def test_stride2_keeps_even_rows_and_columns(grid, sub):
    h, w = grid
    ids = torch.arange(h * w, dtype=torch.float).reshape(1, h * w, 1)
    tokens, sub_grid = stride2_grid_tokens(ids.expand(2, -1, 3), grid)
    assert sub_grid == sub == (math.ceil(h / 2), math.ceil(w / 2))
    assert tokens.shape == (2, sub[0] * sub[1], 3)
    expected = [r * w + c for r in range(0, h, 2) for c in range(0, w, 2)]
    assert tokens[0, :, 0].tolist() == expected


def test_stride2_rejects_a_wrong_grid():
    with pytest.raises(ValueError, match='do not fit the grid'):
        stride2_grid_tokens(torch.zeros(1, 10, 4), (3, 4))


@pytest.mark.parametrize('grid', [(4, 6), (5, 7)])
def test_qd_layer_equals_the_plain_layer_on_the_kept_tokens(grid):
    """Queries attend to all tokens: the QD layer's output is the plain
    layer's output at the sampled positions."""
    plain, qd = _layer_pair()
    x = torch.randn(2, grid[0] * grid[1], DIMS)
    out, sub_grid = qd(x, grid)
    assert sub_grid == (math.ceil(grid[0] / 2), math.ceil(grid[1] / 2))
    expected, _ = stride2_grid_tokens(plain(x), grid)
    torch.testing.assert_close(out, expected)


def test_qd_layer_keeps_prefix_tokens_as_queries():
    plain, qd = _layer_pair()
    grid = (3, 5)
    x = torch.randn(2, 1 + 15, DIMS)
    out, sub_grid = qd(x, grid, num_prefix_tokens=1)
    assert sub_grid == (2, 3)
    assert out.shape == (2, 1 + 6, DIMS)
    ref = plain(x)
    sub, _ = stride2_grid_tokens(ref[:, 1:], grid)
    torch.testing.assert_close(out, torch.cat((ref[:, :1], sub), dim=1))


def test_qd_layer_with_cp_gives_the_same_values_and_gradients():
    _, qd = _layer_pair()
    _, qd_cp = _layer_pair()
    qd_cp.load_state_dict(qd.state_dict())
    qd_cp.with_cp = True
    x = torch.randn(2, 20, DIMS)
    grads = []
    for layer in (qd, qd_cp):
        inp = x.clone().requires_grad_()
        out, _ = layer.train()(inp, (4, 5))
        out.square().sum().backward()
        grads.append((out, inp.grad, layer.attn.attn.in_proj_weight.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


# --- QU -------------------------------------------------------------------


def _qu(**kwargs):
    cfg = dict(
        in_channels=DIMS,
        num_levels=2,
        embed_dims=16,
        num_heads=2,
        num_layers=2,
        query_grid=(4, 6))
    cfg.update(kwargs)
    qu = QueryUpsample(**cfg)
    qu.init_weights()
    return qu.eval()


def _levels(batch=2, grids=((4, 6), (2, 3))):
    return [(torch.randn(batch, h * w, DIMS), (h, w)) for h, w in grids]


def test_qu_returns_tokens_on_the_target_grid():
    qu = _qu()
    out = qu(_levels(), (4, 6))
    assert out.shape == (2, 24, 16)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(qu.queries((4, 6)), qu.q.weight)


@pytest.mark.parametrize('grid', [(5, 7), (3, 3), (8, 12)])
def test_qu_resizes_its_queries_bicubically_for_other_grids(grid):
    qu = _qu()
    queries = qu.queries(grid)
    assert queries.shape == (grid[0] * grid[1], 16)
    as_map = qu.q.weight.T.reshape(1, 16, 4, 6)
    expected = F.interpolate(
        as_map, size=grid, mode='bicubic', align_corners=False)
    torch.testing.assert_close(queries, expected.reshape(16, -1).T)
    levels = _levels(
        grids=(grid, (math.ceil(grid[0] / 2), math.ceil(grid[1] / 2))))
    assert qu(levels, grid).shape == (2, grid[0] * grid[1], 16)


def test_qu_reads_every_level_and_passes_gradients():
    qu = _qu().train()
    levels = [(t.requires_grad_(), g) for t, g in _levels()]
    qu(levels, (5, 7)).sum().backward()
    for tokens, _ in levels:
        assert tokens.grad is not None and tokens.grad.abs().sum() > 0
    for name, param in qu.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_qu_parameter_names_follow_the_official_layout():
    keys = set(_qu().state_dict())
    assert 'q.weight' in keys
    for i in range(2):
        assert f'input_projs.{i}.weight' in keys
        assert f'proj_norms.{i}.weight' in keys
        for k in range(2):
            prefix = f'decoders.{i}.layers.{k}.'
            for name in ('self_attn.in_proj_weight',
                         'multihead_attn.out_proj.weight', 'linear1.weight',
                         'linear2.bias', 'norm1.weight', 'norm3.bias'):
                assert prefix + name in keys


def test_qu_errors_name_the_problem():
    with pytest.raises(ValueError, match='reads 2 levels, got 1'):
        _qu()(_levels()[:1], (4, 6))
    with pytest.raises(ValueError, match='do not fit the grid'):
        _qu()([(torch.zeros(1, 5, DIMS), (2, 3))] * 2, (4, 6))
    with pytest.raises(ValueError, match='divisible'):
        QueryUpsample(DIMS, embed_dims=10, num_heads=3)
    with pytest.raises(ValueError, match='use_proj=False'):
        QueryUpsample(DIMS, embed_dims=16, num_heads=2, use_proj=False)


def test_qu_locality_prior_is_an_opt_in_gaussian_on_the_cell_distance():
    """Non-official option: off by default, no parameters, and with it each
    query's cross-attention logits get -d^2 / (2 sigma^2)."""
    assert _qu().locality_sigma is None
    local = _qu(locality_sigma=1.0)
    assert set(local.state_dict()) == set(_qu().state_dict())
    bias = local.locality_bias((4, 6), (2, 3), torch.zeros(1))
    assert bias.shape == (24, 6)
    # query (1, 1) sits at (1.5, 1.5) output cells; token (0, 0) of the
    # 2x3 level covers cells 0-1 x 0-1, centre (1, 1): d^2 = 0.5
    assert bias[1 * 6 + 1, 0] == pytest.approx(-0.25)
    assert bias[1 * 6 + 1].argmax() == 0
    # on its own grid the nearest token is the query's own cell
    own = local.locality_bias((4, 6), (4, 6), torch.zeros(1))
    assert torch.equal(own.argmax(1), torch.arange(24))
    assert torch.all(own.diagonal() == 0)
    out = local(_levels(), (4, 6))
    assert out.shape == (2, 24, 16) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match='locality_sigma'):
        _qu(locality_sigma=0)


def test_qu_locality_prior_makes_the_output_follow_the_local_tokens():
    """With a sharp prior every query reads (almost) only its own cell
    (one level, one layer: the query self-attention comes before the
    cross-attention, so only the changed cell's query moves)."""
    qu = _qu(locality_sigma=0.05, num_levels=1, num_layers=1)
    tokens = torch.randn(2, 24, DIMS)
    base = qu([(tokens, (4, 6))], (4, 6))
    tokens[:, 7] += 10.0
    moved = qu([(tokens, (4, 6))], (4, 6))
    changed = (moved - base).abs().sum(-1).sum(0) > 1e-4
    assert changed.nonzero().flatten().tolist() == [7]


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
    model = _shrunk().eval()
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
    model = _shrunk().eval()
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
    plain = VisionTransformer(**_vit_cfg())
    plain.init_weights()
    plain.eval()
    model = _shrunk(return_levels=True).eval()
    result = model.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(
        k.startswith('qu.') for k in result.missing_keys)
    img = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(img)[0], plain(img)[0])


def test_shrunk_vit_loads_a_pretrained_plain_vit_checkpoint(tmp_path):
    plain = VisionTransformer(**_vit_cfg())
    plain.init_weights()
    path = str(tmp_path / 'vit.pth')
    torch.save(plain.state_dict(), path)
    model = MODELS.build(
        dict(type='ShrunkViT', qd_index=2, pretrained=path, **_vit_cfg()))
    model.init_weights()
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)
    assert isinstance(model.layers[2], QDEncoderLayer)
    assert model.qu.q.weight.std() > 0.5  # QU initialised, not loaded


def test_shrunk_vit_state_dict_is_the_plain_one_plus_qu():
    plain_keys = set(VisionTransformer(**_vit_cfg()).state_dict())
    keys = set(_shrunk().state_dict())
    assert {k for k in keys if not k.startswith('qu.')} == plain_keys
    assert 'qu.q.weight' in keys
    assert _shrunk().qu.q.weight.shape == (8 * 8, 16)  # img_size / patch


def test_shrunk_vit_gradients_reach_every_used_parameter():
    model = _shrunk().train()
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
        model = _shrunk(
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
    model = _shrunk(drop_path_rate=0.3)
    rates = torch.linspace(0, 0.3, 4)
    for i, layer in enumerate(model.layers):
        drop = getattr(layer.ffn.dropout_layer, 'drop_prob', 0.0)
        assert drop == pytest.approx(rates[i].item())


def test_shrunk_vit_with_a_class_token():
    model = _shrunk(with_cls_token=True, return_levels=True).eval()
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
        _shrunk(**kwargs)


def test_shrunk_vit_is_registered():
    assert MODELS.get('ShrunkViT') is ShrunkViT
