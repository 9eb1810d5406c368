"""Query upsampling (QU, SegViT v2 / Shrunk): the target grid, bicubic query
resizing, gradients, parameter names, errors, locality prior."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mmseg_segvit.models import QueryUpsample

DIMS = 32
grids = st.tuples(st.integers(1, 9), st.integers(1, 9))


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
    for dropout in ('abc', 1.0, -0.1, True):
        with pytest.raises(
                ValueError,
                match=r'qu_cfg\.dropout of ShrunkViT\) must be a '
                r'number in \[0, 1\)'):
            QueryUpsample(DIMS, embed_dims=16, num_heads=2, dropout=dropout)


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


def test_qu_sincos_query_init_starts_the_queries_at_their_cells():
    """query_init='sincos': the same parameters and forward pass, the queries
    start as the sine-cosine table of query_grid at the norm of N(0, 1)
    draws (sqrt(D)); each row is closest to its own cell's row and, near
    it, the dot product falls with the distance."""
    normal, sincos = _qu(), _qu(query_init='sincos')
    assert normal.query_init == 'normal'
    assert set(sincos.state_dict()) == set(normal.state_dict())
    q = sincos.q.weight.detach()
    assert q.shape == (24, 16)
    torch.testing.assert_close(q.norm(dim=-1), torch.full((24, ), 4.0))
    assert torch.equal((q @ q.T).argmax(1), torch.arange(24))
    # cell (1, 1) against (1, 1), (1, 2), (1, 3), (1, 4): 0 to 3 cells away
    along_row = q[7] @ q[7:11].T
    assert torch.all(along_row[:-1] > along_row[1:])
    assert "query_init='sincos'" in repr(sincos)
    # normal draws: no such order
    qn = normal.q.weight.detach()
    assert abs(qn.std().item() - 1) < 0.3
    out = sincos(_levels(), (4, 6))
    assert out.shape == (2, 24, 16) and torch.isfinite(out).all()


@pytest.mark.parametrize('kwargs, match', [
    (dict(query_init='zeros'), "query_init must be one of"),
    (dict(query_init='sincos', embed_dims=18, num_heads=2), 'divisible by 4'),
])
def test_qu_refuses_unknown_or_unfit_query_inits(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _qu(**kwargs)


def test_qu_locality_prior_makes_the_output_follow_the_local_tokens():
    """With a sharp prior every query reads (almost) only its own cell (one
    level, one layer: the query self-attention comes before the cross-
    attention, so only the changed cell's query moves)."""
    qu = _qu(locality_sigma=0.05, num_levels=1, num_layers=1)
    tokens = torch.randn(2, 24, DIMS)
    base = qu([(tokens, (4, 6))], (4, 6))
    tokens[:, 7] += 10.0
    moved = qu([(tokens, (4, 6))], (4, 6))
    changed = (moved - base).abs().sum(-1).sum(0) > 1e-4
    assert changed.nonzero().flatten().tolist() == [7]


@settings(max_examples=15, deadline=None)
@given(
    levels=st.lists(grids, min_size=1, max_size=3),
    out_grid=grids,
    query_grid=st.tuples(st.integers(2, 6), st.integers(2, 6)),
    batch=st.integers(1, 2))
def test_qu_shapes_property(levels, out_grid, query_grid, batch):
    qu = QueryUpsample(
        in_channels=16,
        num_levels=len(levels),
        embed_dims=16,
        num_heads=2,
        num_layers=1,
        query_grid=query_grid)
    qu.init_weights()
    qu.eval()
    inputs = [(torch.randn(batch, h * w, 16), (h, w)) for h, w in levels]
    with torch.no_grad():
        out = qu(inputs, out_grid)
    assert out.shape == (batch, out_grid[0] * out_grid[1], 16)
    assert torch.isfinite(out).all()


def test_cell_distances_in_query_grid_cells():
    """The distance both the locality prior and the read-distance benchmark
    use: query and token cell centres, in query-grid cells."""
    from mmseg_segvit.models.layers import cell_distances
    like = torch.zeros(1)
    own = cell_distances((4, 6), (4, 6), like)
    assert own.shape == (24, 24)
    assert torch.all(own.diagonal() == 0)
    # query (0, 0) to token (3, 5): 3 rows and 5 columns away
    assert own[0, 23] == pytest.approx(34**0.5)
    # a level half as fine: token (0, 0) centred at (1, 1) query cells
    half = cell_distances((4, 6), (2, 3), like)
    assert half.shape == (24, 6)
    assert half[0, 0] == pytest.approx(0.5**0.5)
    torch.testing.assert_close(
        _qu(locality_sigma=2.0).locality_bias((4, 6), (2, 3), like),
        -half.square() / 8)
