"""Patch grids of images: how many patches a ViT lays on an image.

A leaf module (of the package it imports only the type aliases), shared by the
models, the checkpoint converters and the exporters.
"""
from typing import Sequence, Union

from mmengine.utils import to_2tuple

from .typing_utils import Grid

__all__ = ['patch_grid']


def patch_grid(img_size: Union[int, Sequence[int]],
               patch_size: Union[int, Sequence[int]]) -> Grid:
    """The (H // patch, W // patch) grid of patches of an image.

    For the ``img_size`` a ViT was trained at, the grid its ``pos_embed``
    (and ShrunkViT's QU queries) are laid on; for another input size, the
    grid it runs on (mmseg's ``PatchEmbed`` drops a partial last patch
    unless it pads). The one place this package divides a size by a patch.

    Args:
        img_size (int | Sequence[int]): H and W in pixels (an int: square).
        patch_size (int | Sequence[int]): Patch side in pixels, or
            (height, width).

    Returns:
        tuple[int, int]: Patches along H and W.
    """
    (h, w), (ph, pw) = to_2tuple(img_size), to_2tuple(patch_size)
    return int(h) // int(ph), int(w) // int(pw)
