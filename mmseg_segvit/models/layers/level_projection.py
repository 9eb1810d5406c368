"""Per-level input projections of ATMHead and QueryUpsample."""
from typing import List, Sequence, Tuple, Union

import torch.nn as nn

__all__ = ['build_level_projections', 'level_channels']


def level_channels(in_channels: Union[int, Sequence[int]],
                   num_levels: int,
                   embed_dims: int,
                   num_heads: int,
                   names: Tuple[str, str] = ('levels', 'num_levels'),
                   exact: bool = True) -> List[int]:
    """The channels of each of ``num_levels`` levels, checked.

    Args:
        in_channels (int | Sequence[int]): One int for every level, or one
            per level.
        num_levels (int): Levels read.
        embed_dims (int): Width D of the attention that reads them.
        num_heads (int): Its heads; must divide D.
        names (tuple[str, str]): What a level is and the setting that
            counts them, for the error message.
        exact (bool): A list must have ``num_levels`` entries; if False a
            longer one is cut to ``num_levels``. Default: True.

    Returns:
        list[int]: ``num_levels`` channel counts.

    Raises:
        ValueError: Fewer channel counts than levels (or more, if
            ``exact``), or ``num_heads`` does not divide ``embed_dims``.
    """
    if isinstance(in_channels, int):
        in_channels = [in_channels] * num_levels
    in_channels = list(in_channels)
    if not exact:
        in_channels = in_channels[:num_levels]
    if len(in_channels) != num_levels:
        raise ValueError(f'in_channels lists {len(in_channels)} {names[0]} '
                         f'but {names[1]} is {num_levels}')
    if num_heads < 1 or embed_dims % num_heads != 0:
        raise ValueError(f'embed_dims ({embed_dims}) must be divisible by '
                         f'num_heads ({num_heads}), a positive count')
    return in_channels


def build_level_projections(
        in_channels: Sequence[int],
        embed_dims: int,
        use_proj: bool = True,
        what: str = 'inputs') -> Tuple[nn.ModuleList, nn.ModuleList]:
    """Bring each level's tokens (B, N_i, C_i) to width D = ``embed_dims``.

    Level i is ``proj_norms[i](input_projs[i](tokens))``: Linear(C_i -> D)
    then LayerNorm(D), as the official SegViT heads project every stage
    (``input_proj_{n}`` and ``proj_norm_{n}`` in ``atm_head.py`` and
    ``tpn_atm_head.py`` of github zbwxp/SegVit). Without ``use_proj`` both
    are identities and every level must already have D channels.

    The two lists are returned separately so that the owner keeps them as
    ``input_projs`` and ``proj_norms``: their state-dict keys
    (``input_projs.{i}.weight``, ``proj_norms.{i}.bias``, ...) are the
    official ones renumbered from 0, which the checkpoint converter relies
    on (:mod:`mmseg_segvit.checkpoints.official_segvit`).

    Args:
        in_channels (Sequence[int]): Channels C_i of each level, in the
            order the owner reads them.
        embed_dims (int): Width D.
        use_proj (bool): Build the projections; if False, identities.
            Default: True.
        what (str): What the levels are, for the error message
            (``'inputs'``, ``'levels'``). Default: 'inputs'.

    Returns:
        tuple[nn.ModuleList, nn.ModuleList]: ``input_projs`` and
        ``proj_norms``, one module per level each.

    Raises:
        ValueError: ``use_proj`` is False and a level has other than
            ``embed_dims`` channels.
    """
    in_channels = list(in_channels)
    if not use_proj and any(c != embed_dims for c in in_channels):
        raise ValueError(f'use_proj=False needs {what} with embed_dims '
                         f'({embed_dims}) channels, got {in_channels}: set '
                         'use_proj=True or embed_dims to their width')
    input_projs = nn.ModuleList(
        nn.Linear(c, embed_dims) if use_proj else nn.Identity()
        for c in in_channels)
    proj_norms = nn.ModuleList(
        nn.LayerNorm(embed_dims) if use_proj else nn.Identity()
        for _ in in_channels)
    return input_projs, proj_norms
