import pytest
import torch
import torch.nn as nn
from fixtures import tiny_head

from mmseg_segvit.models.layers import (QueryUpsample, build_level_projections,
                                        level_channels)


def test_projects_each_level_to_embed_dims():
    projs, norms = build_level_projections([8, 16], embed_dims=12)
    assert [type(m) for m in projs] == [nn.Linear, nn.Linear]
    assert [m.in_features for m in projs] == [8, 16]
    assert all(isinstance(m, nn.LayerNorm) for m in norms)
    out = norms[1](projs[1](torch.randn(2, 5, 16)))
    assert out.shape == (2, 5, 12)
    # LayerNorm at its initial scale: zero mean, unit variance per token
    torch.testing.assert_close(
        out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)


def test_identity_without_projection_and_channel_check():
    projs, norms = build_level_projections([12, 12], 12, use_proj=False)
    x = torch.randn(1, 3, 12)
    assert torch.equal(norms[0](projs[0](x)), x)
    assert sum(p.numel() for p in projs.parameters()) == 0
    with pytest.raises(
            ValueError,
            match=r'use_proj=False needs levels .*'
            r'\(12\) channels, got \[12, 8\]'):
        build_level_projections([12, 8], 12, use_proj=False, what='levels')


def test_head_and_qu_keep_their_state_dict_keys():
    head = tiny_head(in_channels=[16, 24, 32])
    keys = [
        k for k in head.state_dict()
        if k.startswith(('input_projs', 'proj_norms'))
    ]
    assert keys == [
        f'{m}.{i}.{p}' for m in ('input_projs', 'proj_norms') for i in range(3)
        for p in ('weight', 'bias')
    ]
    # deepest stage first
    assert [m.in_features for m in head.input_projs] == [32, 24, 16]
    qu = QueryUpsample([16, 24], embed_dims=16, num_heads=2)
    assert [m.in_features for m in qu.input_projs] == [16, 24]
    assert {k
            for k in qu.state_dict() if k.startswith('proj_norms')} == {
                'proj_norms.0.weight', 'proj_norms.0.bias',
                'proj_norms.1.weight', 'proj_norms.1.bias'
            }


@pytest.mark.parametrize('num_heads', [0, 3])
def test_heads_must_divide_the_width(num_heads):
    with pytest.raises(
            ValueError,
            match=r'embed_dims \(32\) must be '
            rf'divisible by num_heads \({num_heads}\)'):
        level_channels(32, 3, 32, num_heads)


def test_channel_lists_must_match_the_levels_unless_cut():
    with pytest.raises(
            ValueError,
            match='in_channels lists 3 levels but num_levels is 2'):
        level_channels([8, 16, 24], 2, 32, 4)
    with pytest.raises(ValueError, match='in_channels lists 1 levels'):
        QueryUpsample([8], num_levels=2, embed_dims=32, num_heads=4)
    assert level_channels([8, 16, 24], 2, 32, 4, exact=False) == [8, 16]
    assert level_channels(8, 2, 32, 4) == [8, 8]
