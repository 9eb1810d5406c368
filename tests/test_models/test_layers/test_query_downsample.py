"""Query downsampling (QD, SegViT v2 / Shrunk): the stride-2 token grid and the
QD encoder layer against the plain one."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmseg.models.backbones.vit import TransformerEncoderLayer

from mmseg_segvit.models import QDEncoderLayer, stride2_grid_tokens

DIMS = 32
grids = st.tuples(st.integers(1, 9), st.integers(1, 9))


def _layer_pair():
    """A plain encoder layer and a QD layer with the same weights."""
    kwargs = dict(embed_dims=DIMS, num_heads=2, feedforward_channels=64)
    plain = TransformerEncoderLayer(**kwargs).eval()
    qd = QDEncoderLayer(**kwargs).eval()
    qd.load_state_dict(plain.state_dict())
    return plain, qd


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
    """Queries attend to all tokens: the QD layer's output is the plain layer's
    output at the sampled positions."""
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


@settings(max_examples=15, deadline=None)
@given(grid=grids, prefix=st.integers(0, 1), batch=st.integers(1, 2))
def test_qd_layer_shapes_property(grid, prefix, batch):
    layer = QDEncoderLayer(
        embed_dims=16, num_heads=2, feedforward_channels=32).eval()
    h, w = grid
    x = torch.randn(batch, prefix + h * w, 16)
    sub, sub_grid = stride2_grid_tokens(x[:, prefix:], grid)
    assert sub_grid == (math.ceil(h / 2), math.ceil(w / 2))
    with torch.no_grad():
        out, out_grid = layer(x, grid, num_prefix_tokens=prefix)
    assert out_grid == sub_grid
    assert out.shape == (batch, prefix + sub_grid[0] * sub_grid[1], 16)
    assert torch.isfinite(out).all()
