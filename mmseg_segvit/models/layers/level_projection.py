"""Per-level input projections of ATMHead and QueryUpsample."""
from typing import Sequence, Tuple

import torch.nn as nn

__all__ = ['build_level_projections']


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
