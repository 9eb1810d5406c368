"""benchmarks/qu_read_distance.py: how far QU's cross-attention reads."""
import pytest
import torch
from fixtures import tiny_vit_cfg
from mmseg.models import EncoderDecoder
from mmseg.registry import MODELS

from benchmarks import qu_read_distance


def _shrunk(**qu_cfg):
    backbone = MODELS.build(
        dict(
            type='ShrunkViT',
            **tiny_vit_cfg(
                num_layers=3,
                qd_index=1,
                out_indices=[0, 2],
                norm_cfg=dict(type='LN'),
                pos_embed_init='sincos',
                qu_cfg=dict(
                    embed_dims=16,
                    num_heads=2,
                    num_layers=2,
                    dropout=0.0,
                    **qu_cfg))))
    backbone.init_weights()
    model = EncoderDecoder.__new__(EncoderDecoder)
    torch.nn.Module.__init__(model)
    model.backbone = backbone
    return model.eval()


def test_read_distance_of_a_fresh_qu_is_the_uniform_one():
    """Fresh queries read every token about equally: the mean distance is that
    of uniform weights (on the 8x8 grid 4.14 cells, on the 4x4 level of 2-cell
    tokens 4.09 cells)."""
    torch.manual_seed(0)
    rows = qu_read_distance.read_distances(_shrunk(),
                                           torch.randn(2, 3, 64, 64))
    assert [(r['level'], r['layer']) for r in rows] == [(0, 0), (0, 1), (1, 0),
                                                        (1, 1)]
    assert [r['level_grid'] for r in rows] == [(8, 8)] * 2 + [(4, 4)] * 2
    assert all(r['grid'] == (8, 8) for r in rows)
    assert [round(r['uniform'], 2) for r in rows] == [4.14] * 2 + [4.09] * 2
    for r in rows:
        assert r['distance'] == pytest.approx(r['uniform'], rel=0.1)


def test_read_distance_sees_a_local_qu():
    """With a sharp locality prior each query reads its own cell on the level
    of its own grid (distance ~0) and the nearest tokens of the coarser level
    (sqrt(0.5) cells from every query)."""
    torch.manual_seed(0)
    model = _shrunk(locality_sigma=0.05)
    rows = qu_read_distance.read_distances(model, torch.randn(2, 3, 64, 64))
    assert rows[0]['distance'] < 0.01
    assert rows[2]['distance'] == pytest.approx(0.5**0.5, abs=0.01)
    # the hooks are gone and the backbone returns the QU map alone again
    assert len(model.backbone(torch.randn(1, 3, 64, 64))) == 1
    assert not model.backbone.qu.decoders[0].layers[0].multihead_attn. \
        _forward_pre_hooks


def test_position_norms():
    model = _shrunk()
    pos, patch = qu_read_distance.position_norms(model,
                                                 torch.randn(2, 3, 64, 64))
    assert pos == pytest.approx(4.0)  # sqrt(32 / 2)
    assert patch > 0
