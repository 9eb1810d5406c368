"""Resizing a learned position table by the rule of the code that trained it.

Foundation ViTs resize their (1, [prefix +] h * w, C) position table to
the patch grid of each input, but not all by the same rule:

=====================  ========  =========  ===========================
family                 mode      antialias  output size
=====================  ========  =========  ===========================
DINOv2 (no registers)  bicubic   no         ``scale_factor=(H + 0.1) / h``
DINOv2 with registers  bicubic   yes        ``size=(H, W)``
timm (every other)     bicubic   yes        ``size=(H, W)``
=====================  ========  =========  ===========================

The DINOv2 rules are those of ``DinoVisionTransformer.
interpolate_pos_encoding`` (facebookresearch/dinov2,
``dinov2/models/vision_transformer.py``) with the settings its hub
(``dinov2/hub/backbones.py``) gives each release: ``interpolate_offset=0.1,
interpolate_antialias=False`` for ``dinov2_vit*14``, ``0.0, True`` for
``dinov2_vit*14_reg``. The offset (a historical work-around of the
original DINO) moves the sampling positions of the bicubic kernel, and
PyTorch's antialiased bicubic uses another kernel (a = -0.5 instead of
-0.75) even when it enlarges, so timm's single rule
(``resample_abs_pos_embed``:
size, antialias) gives other position tables than the official code for
DINOv2 without registers. :class:`~mmseg_segvit.models.backbones.TimmViT`
resizes by :func:`pos_table_rule` both when it loads a file and at run
time.
"""
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .typing_utils import Grid

__all__ = ['PosTableRule', 'TIMM_RULE', 'pos_table_rule', 'resize_pos_table']


class PosTableRule(NamedTuple):
    """How a position table is interpolated to another grid.

    Attributes:
        mode (str): ``F.interpolate`` mode.
        antialias (bool): ``F.interpolate``'s ``antialias``.
        offset (float): 0: interpolate to ``size=(H, W)``; else to
            ``scale_factor=((H + offset) / h, (W + offset) / w)`` as the
            official DINOv2 code does (same output size, other sampling
            positions).
    """
    mode: str = 'bicubic'
    antialias: bool = True
    offset: float = 0.0


#: timm's ``resample_abs_pos_embed`` default.
TIMM_RULE = PosTableRule()
#: ``dinov2_vit*14`` of the official hub.
DINOV2_RULE = PosTableRule(antialias=False, offset=0.1)


def pos_table_rule(model_name: str) -> PosTableRule:
    """The rule the official code of a timm model's weights resizes by.

    Args:
        model_name (str): timm model name (``vit_large_patch14_dinov2``).

    Returns:
        PosTableRule: :data:`DINOV2_RULE` for timm's DINOv2 models without
        registers, :data:`TIMM_RULE` otherwise (DINOv2 with registers uses
        timm's rule officially too).
    """
    name = model_name.split('.')[0]
    if name.endswith('_dinov2') and '_reg' not in name:
        return DINOV2_RULE
    return TIMM_RULE


def resize_pos_table(table: Tensor,
                     src_grid: Sequence[int],
                     dst_grid: Sequence[int],
                     num_prefix: int = 0,
                     rule: PosTableRule = TIMM_RULE) -> Tensor:
    """(1, P + h * w, C) -> (1, P + H * W, C), prefix entries kept.

    Args:
        table (Tensor): Position table, shape (1, P + h * w, C), its P
            prefix (class-token) entries first.
        src_grid (Sequence[int]): (h, w) of ``table``.
        dst_grid (Sequence[int]): (H, W) wanted.
        num_prefix (int): P. Default: 0.
        rule (PosTableRule): Interpolation. Default: timm's.

    Returns:
        Tensor: The resized table in ``table``'s dtype (interpolated in
        float32); ``table`` itself when the grids are equal.

    Raises:
        ValueError: ``table`` does not hold ``P + h * w`` entries.
    """
    h, w = int(src_grid[0]), int(src_grid[1])
    dst: Grid = (int(dst_grid[0]), int(dst_grid[1]))
    if table.shape[1] != num_prefix + h * w:
        raise ValueError(
            f'a position table of {table.shape[1]} entries is not '
            f'{num_prefix} prefix entries and a {h}x{w} grid')
    if (h, w) == dst:
        return table
    prefix, grid = table[:, :num_prefix], table[:, num_prefix:]
    channels = table.shape[-1]
    grid = grid.float().reshape(1, h, w, channels).permute(0, 3, 1, 2)
    if rule.offset:
        size = dict(
            scale_factor=((dst[0] + rule.offset) / h,
                          (dst[1] + rule.offset) / w))
    else:
        size = dict(size=dst)
    grid = F.interpolate(
        grid, mode=rule.mode, antialias=rule.antialias, **size)
    grid = grid.permute(0, 2, 3, 1).reshape(1, dst[0] * dst[1], channels)
    grid = grid.to(table.dtype)
    return torch.cat((prefix, grid), dim=1) if num_prefix else grid
