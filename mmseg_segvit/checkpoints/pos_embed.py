"""Resizing stored ViT position embeddings to another patch grid.

A stored ``pos_embed`` of shape (1, 1 + N, C) does not say on which grid
its N patch positions lie (1024 positions may be 32x32 or 16x64), so the
source grid is never guessed from a square root. It is, in this order:
given explicitly (``src_grid``); recorded in the checkpoint (the backbones
of this package write the grid of each position table into the state
dict's metadata, under :data:`GRIDS_KEY`); or the grid of the released
checkpoints this package converts, for their lengths. Any other length is
an error that says how to load the file:

======  =======  ==========================================
tokens  grid     released as
======  =======  ==========================================
196     14x14    ImageNet ViTs at 224
576     24x24    AugReg ViT-B/16, ViT-L/16 at 384
900     30x30    SegViT on Pascal Context (480 crop)
1024    32x32    SegViT ViT-B on ADE20K, COCO-Stuff (512 crop)
1600    40x40    SegViT ViT-L on ADE20K (640 crop)
======  =======  ==========================================
"""
from typing import Optional, Sequence

from torch import Tensor

from ..typing_utils import Grid
from .errors import ConversionError

__all__ = ['RELEASED_GRIDS', 'GRIDS_KEY', 'source_grid', 'resize_pos_embed']

#: Key of a module's state-dict metadata (``state_dict._metadata[name]``,
#: kept by ``torch.save`` and mmengine's checkpoints) that maps each of its
#: position tables (``'pos_embed'``, ``'qu.q.weight'``) to the (h, w) grid
#: it is laid on.
GRIDS_KEY = 'position_grids'

RELEASED_GRIDS = {
    196: (14, 14),
    576: (24, 24),
    900: (30, 30),
    1024: (32, 32),
    1600: (40, 40),
}


def source_grid(pos_embed: Tensor,
                src_grid: Optional[Sequence[int]] = None,
                name: str = 'pos_embed',
                prefix_tokens: int = 1,
                how: Optional[str] = None) -> Grid:
    """The (h, w) grid of a stored (1, 1 + h*w, C) ``pos_embed``.

    Args:
        pos_embed (Tensor): (1, 1 + N, C) embeddings, class token first,
            or another table of (..., prefix_tokens + N, C).
        src_grid (Sequence[int], optional): The grid they were trained
            on (given or recorded). Default: the released grid for N (see
            the module table).
        name (str): Key for messages.
        prefix_tokens (int): Rows before the grid's positions (the class
            token). Default: 1.
        how (str, optional): What to do when the grid is unknown, for the
            message. Default: give ``src_grid`` / ``--src-grid``.

    Raises:
        ConversionError: ``src_grid`` does not hold N positions, or it is
            not given and N is not the length of a released grid.
    """
    tokens = pos_embed.shape[-2] - prefix_tokens
    if src_grid is None:
        if tokens not in RELEASED_GRIDS:
            known = ', '.join(f'{n} ({h}x{w})'
                              for n, (h, w) in RELEASED_GRIDS.items())
            how = how or ('give the grid it was trained on (src_grid=(H, '
                          'W), or --src-grid H W)')
            raise ConversionError(
                f'{name} has {tokens} patch positions, which is not the '
                f'grid of a released checkpoint ({known}), and its grid is '
                f'not recorded: {how}')
        return RELEASED_GRIDS[tokens]
    grid = tuple(int(s) for s in src_grid)
    if len(grid) != 2 or grid[0] * grid[1] != tokens:
        raise ConversionError(
            f'{name} has {tokens} patch positions but the source grid '
            f'{grid} holds {grid[0] * grid[1] if len(grid) == 2 else "?"}')
    return grid


def resize_pos_embed(pos_embed: Tensor,
                     dst_grid: Sequence[int],
                     src_grid: Optional[Sequence[int]] = None,
                     mode: str = 'bicubic',
                     name: str = 'pos_embed') -> Tensor:
    """(1, 1 + h*w, C) -> (1, 1 + H*W, C) with mmseg's ViT resize.

    Args:
        pos_embed (Tensor): (1, 1 + h*w, C) embeddings, class token first.
        dst_grid (Sequence[int]): Target grid (H, W).
        src_grid (Sequence[int], optional): Source grid (h, w); see
            :func:`source_grid`.
        mode (str): Interpolation mode. Default: 'bicubic'.
        name (str): Key for messages.
    """
    from mmseg.models.backbones.vit import VisionTransformer
    src = source_grid(pos_embed, src_grid, name)
    dst = tuple(int(s) for s in dst_grid)
    return VisionTransformer.resize_pos_embed(pos_embed.float(), dst, src,
                                              mode).to(pos_embed.dtype)
