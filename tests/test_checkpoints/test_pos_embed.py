"""Position-embedding resizes take the source grid, never a square root."""
import pytest
import torch
from mmseg.models.backbones.vit import VisionTransformer
from official_checkpoints import official_checkpoint, tiny_cfg

from mmseg_segvit.checkpoints import (RELEASED_GRIDS, ConversionError,
                                      resize_pos_embed, source_grid)
from mmseg_segvit.tools import convert_official_segvit as tool


def rows_embed(h, w, dims=8):
    """(1, 1 + h*w, dims) embeddings whose value is the grid row index."""
    rows = torch.arange(h, dtype=torch.float32).repeat_interleave(w)
    patches = rows[None, :, None].expand(1, h * w, dims)
    return torch.cat([torch.full((1, 1, dims), -1.0), patches], dim=1)


def test_released_lengths_map_to_their_grids():
    for tokens, (h, w) in RELEASED_GRIDS.items():
        assert h * w == tokens
        assert source_grid(torch.zeros(1, tokens + 1, 4)) == (h, w)
    # ViT-B at 512: 1024 positions on 32x32; ViT-L at 640: 40x40
    assert RELEASED_GRIDS[1024] == (32, 32) and RELEASED_GRIDS[1600] == (40,
                                                                         40)


def test_other_lengths_need_the_grid_named():
    embed = torch.zeros(1, 1 + 16 * 64, 4)  # 1024 = 16x64 as well as 32x32
    with pytest.raises(
            ConversionError,
            match=r'1024 patch positions.*\(32, 16\) holds 512'):
        source_grid(embed, (32, 16))
    assert source_grid(embed, (16, 64)) == (16, 64)
    with pytest.raises(
            ConversionError,
            match=r'backbone\.pos_embed has 128 patch positions.*'
            r'src_grid=\(H, W\)'):
        source_grid(torch.zeros(1, 129, 4), name='backbone.pos_embed')


def test_a_non_square_source_grid_is_resized_as_such():
    embed = rows_embed(2, 8)
    out = resize_pos_embed(embed, (4, 16), src_grid=(2, 8))
    assert out.shape == (1, 1 + 64, 8)
    assert torch.equal(out[:, :1], embed[:, :1])  # class token kept
    grid = out[0, 1:, 0].reshape(4, 16)
    # rows stay constant along the width and increase down the height
    torch.testing.assert_close(grid, grid[:, :1].expand(4, 16))
    assert bool((grid[1:, 0] > grid[:-1, 0]).all())
    # the same as mmseg's resize with the grid given
    want = VisionTransformer.resize_pos_embed(embed, (4, 16), (2, 8),
                                              'bicubic')
    torch.testing.assert_close(out, want)
    # reading the same 16 positions as 4x4 gives another (wrong) answer
    square = resize_pos_embed(embed, (4, 16), src_grid=(4, 4))
    assert not torch.allclose(square, out)


def test_dtype_is_kept():
    embed = rows_embed(4, 4).to(torch.bfloat16)
    out = resize_pos_embed(embed, (6, 6), (4, 4))
    assert out.dtype == torch.bfloat16 and out.shape == (1, 37, 8)


def test_cli_src_grid_reaches_the_converter(tmp_path, capsys):
    from mmengine.config import Config
    sd, _, _ = official_checkpoint(img=64)  # a 4x4 grid
    src = str(tmp_path / 'official.pth')
    torch.save(dict(state_dict=sd), src)
    cfg_path = str(tmp_path / 'crop96.py')
    Config(dict(model=tiny_cfg(img=96))).dump(cfg_path)
    dst = str(tmp_path / 'out.pth')
    with pytest.raises(SystemExit, match='16 patch positions'):
        tool.main([src, dst, '--config', cfg_path])
    with pytest.raises(SystemExit, match=r'source grid \(3, 5\) holds 15'):
        tool.main([src, dst, '--config', cfg_path, '--src-grid', '3', '5'])
    tool.main([src, dst, '--config', cfg_path, '--src-grid', '4', '4'])
    assert 'resized backbone.pos_embed from (1, 17, 32) to (1, 37, 32)' in \
        capsys.readouterr().out
