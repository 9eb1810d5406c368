"""Query-based up-sampling (QU) of SegViT's Shrunk structure."""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import constant_init, trunc_normal_init
from timm.layers import build_sincos2d_pos_embed
from torch import Tensor

from ...typing_utils import Grid
from .level_projection import build_level_projections, level_channels
from .queries import batch_queries

__all__ = ['QueryUpsample', 'cell_distances', 'QUERY_INITS']

#: Starts of QU's queries (``QueryUpsample(query_init=...)``).
QUERY_INITS = ('normal', 'sincos')


def cell_distances(grid: Grid, level_grid: Grid, like: Tensor) -> Tensor:
    """Distance from each query's cell to each token's cell, in cells of the
    query grid.

    Both grids cover the same image; cell centres are compared in units of
    one cell of ``grid`` (a token of a grid half as fine is two cells
    wide). Used by QU's locality prior and to measure how far QU's
    cross-attention reads (``benchmarks/qu_read_distance.py``).

    Args:
        grid (tuple[int, int]): Query grid (H, W).
        level_grid (tuple[int, int]): Token grid (h, w).
        like (Tensor): Gives dtype and device.

    Returns:
        Tensor: Euclidean distances, shape (H * W, h * w), both row-major.
    """

    def centres(n: int, scale: int) -> Tensor:
        steps = torch.arange(n, device=like.device, dtype=like.dtype)
        return (steps + 0.5) * scale / n

    (H, W), (h, w) = grid, level_grid
    dy = centres(H, H)[:, None] - centres(h, H)[None, :]  # (H, h)
    dx = centres(W, W)[:, None] - centres(w, W)[None, :]  # (W, w)
    dist2 = dy[:, None, :, None]**2 + dx[None, :, None, :]**2
    return dist2.sqrt().reshape(H * W, h * w)


class QueryUpsample(nn.Module):
    """Learnable queries on the output grid that read backbone levels.

    One query per position of the output grid (the 1/16 grid of the
    image) goes through one small transformer decoder per feature level,
    from the high-resolution level to the low-resolution one; each level is
    first projected to ``embed_dims`` and normalised. The decoders are
    torch's post-norm ``nn.TransformerDecoder`` (query self-attention,
    cross-attention to the level's tokens, ReLU FFN, dropout). The queries
    are trained on ``query_grid``; for another output grid they are resized
    like position embeddings (bicubic by default).

    Parameters follow the query-up-sampling part of the official
    ``TPNATMHead`` key by key: ``q`` is its ``q``, ``input_projs.{i}``,
    ``proj_norms.{i}`` and ``decoders.{i}`` are its ``input_proj_{i+1}``,
    ``proj_norm_{i+1}`` and ``decoder_{i+1}``.

    Args:
        in_channels (int | Sequence[int]): Channels of each level; an int
            means the same for every level.
        num_levels (int): Number of levels read. Default: 2.
        embed_dims (int): Width D of the queries. Default: 512.
        num_heads (int): Attention heads of the decoders. Default: 16.
        num_layers (int): Layers per decoder. Default: 3.
        ffn_ratio (int): FFN width as a multiple of D. Default: 4.
        dropout (float): Dropout of the decoder layers. Default: 0.1.
        query_grid (tuple[int, int]): Grid (h, w) the queries are trained
            on; there are ``h * w`` of them. Default: (40, 40).
        interpolate_mode (str): Mode of the query resize. Default: 'bicubic'.
        use_proj (bool): Project and normalise each level (Linear(C -> D) +
            LayerNorm). If False the levels must have D channels.
            Default: True.
        locality_sigma (float, optional): NOT in the official model, an
            opt-in. Adds a Gaussian locality prior to every cross-attention
            logit, ``-d ** 2 / (2 * sigma ** 2)``, with ``d`` the distance
            between the query's and the token's cell centres in output-grid
            cells, so that each query starts out reading the tokens around
            its own position. The official QU has no positional prior and
            takes position from the (pretrained) features it reads. No
            parameters; off (None) in the paper configs and the Shrunk demo
            (only `segvit-localqu_...` sets it). Default: None.
        query_init (str): How :meth:`init_weights` draws the queries.
            ``'normal'``: N(0, 1), the official code's (``nn.Embedding``'s
            default). ``'sincos'``: the 2D sine-cosine table of
            ``query_grid`` (MAE's, timm's ``build_sincos2d_pos_embed``),
            scaled by sqrt(2) to the mean norm of the N(0, 1) draws
            (sqrt(D)); needs D divisible by 4. The queries stay learnable
            parameters and the forward pass is the same: only their start
            differs, each query beginning at its cell's place in a code the
            cross-attention can align with the position the features carry.
            The Shrunk demo sets it (configs/segvit/README.md, "How the
            official Shrunk demo learns").
            Default: 'normal'.

    Raises:
        ValueError: ``dropout`` not a number in [0, 1), ``locality_sigma``
            not None or > 0, an unknown ``query_init``, ``'sincos'`` with D
            not divisible by 4, a ``query_grid`` that is not (h, w) >= 1, or
            widths that do not fit (:func:`level_channels`).
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 num_levels: int = 2,
                 embed_dims: int = 512,
                 num_heads: int = 16,
                 num_layers: int = 3,
                 ffn_ratio: int = 4,
                 dropout: float = 0.1,
                 query_grid: Grid = (40, 40),
                 interpolate_mode: str = 'bicubic',
                 use_proj: bool = True,
                 locality_sigma: Optional[float] = None,
                 query_init: str = 'normal') -> None:
        super().__init__()
        number = isinstance(dropout,
                            (int, float)) and not isinstance(dropout, bool)
        if not (number and 0 <= dropout < 1):
            raise ValueError(f'QueryUpsample dropout (qu_cfg.dropout of '
                             f'ShrunkViT) must be a number in [0, 1), got '
                             f'{dropout!r}')
        if locality_sigma is not None and not locality_sigma > 0:
            raise ValueError(f'locality_sigma must be None or > 0, got '
                             f'{locality_sigma}')
        if query_init not in QUERY_INITS:
            raise ValueError(f'query_init must be one of {QUERY_INITS}, got '
                             f'{query_init!r}')
        if query_init == 'sincos' and embed_dims % 4:
            raise ValueError(f"query_init='sincos' needs embed_dims divisible "
                             f'by 4 (a sine and a cosine per axis), got '
                             f"{embed_dims}: change embed_dims or use "
                             "query_init='normal'")
        self.locality_sigma = locality_sigma
        self.query_init = query_init
        in_channels = level_channels(in_channels, num_levels, embed_dims,
                                     num_heads)
        if len(query_grid) != 2 or min(query_grid) < 1:
            raise ValueError(f'query_grid must be (h, w) with h, w >= 1, got '
                             f'{query_grid}')
        self.in_channels = in_channels
        self.embed_dims = embed_dims
        self.query_grid = (int(query_grid[0]), int(query_grid[1]))
        self.interpolate_mode = interpolate_mode
        self.q = nn.Embedding(self.query_grid[0] * self.query_grid[1],
                              embed_dims)
        self.input_projs, self.proj_norms = build_level_projections(
            in_channels, embed_dims, use_proj, what='levels')
        self.decoders = nn.ModuleList(
            nn.TransformerDecoder(
                nn.TransformerDecoderLayer(
                    embed_dims,
                    num_heads,
                    dim_feedforward=embed_dims * ffn_ratio,
                    dropout=dropout,
                    batch_first=True), num_layers) for _ in in_channels)

    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) linear layers, unit LayerNorms, a fresh
        Xavier init of every attention's input projection (the decoder layers
        are copies of one layer), queries by ``query_init``."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_init(m, std=0.02, bias=0)
            elif isinstance(m, nn.LayerNorm):
                constant_init(m, val=1.0, bias=0.0)
            elif isinstance(m, nn.MultiheadAttention):
                nn.init.xavier_uniform_(m.in_proj_weight)
                nn.init.constant_(m.in_proj_bias, 0.0)
        if self.query_init == 'sincos':
            table = build_sincos2d_pos_embed(
                list(self.query_grid), dim=self.embed_dims) * math.sqrt(2)
            with torch.no_grad():
                self.q.weight.copy_(table)
        else:
            nn.init.normal_(self.q.weight)

    def queries(self, grid: Grid) -> Tensor:
        """The queries laid on ``grid``, resized if it is not the trained one.

        Args:
            grid (tuple[int, int]): Output grid (H, W).

        Returns:
            Tensor: Queries, shape (H * W, D), row-major.
        """
        weight = self.q.weight
        if tuple(grid) == self.query_grid:
            return weight
        return self.resize_queries(weight, self.query_grid, grid,
                                   self.interpolate_mode)

    @staticmethod
    def resize_queries(weight: Tensor,
                       src_grid: Grid,
                       dst_grid: Grid,
                       mode: str = 'bicubic') -> Tensor:
        """Queries laid on ``src_grid`` resized to ``dst_grid``, as a position
        embedding is (``F.interpolate``, ``align_corners=False``).

        Args:
            weight (Tensor): (h * w, D), row-major on ``src_grid``.
            src_grid (tuple[int, int]): (h, w).
            dst_grid (tuple[int, int]): (H, W).
            mode (str): Interpolation mode. Default: 'bicubic'.

        Returns:
            Tensor: (H * W, D).
        """
        h, w = src_grid
        weight = weight.reshape(1, h, w, -1).permute(0, 3, 1, 2)
        weight = F.interpolate(
            weight, size=tuple(dst_grid), mode=mode, align_corners=False)
        return weight.flatten(2)[0].transpose(0, 1)

    def forward(self, levels: Sequence[Tuple[Tensor, Grid]],
                grid: Grid) -> Tensor:
        """Up-sample: queries on ``grid`` read the levels in order.

        Args:
            levels (Sequence[tuple]): ``(tokens, (h, w))`` per level, tokens
                of shape (B, h * w, C_i), high resolution first.
            grid (tuple[int, int]): Output grid (H, W).

        Returns:
            Tensor: Output tokens, shape (B, H * W, D), row-major on
            ``grid``.
        """
        if len(levels) != len(self.decoders):
            raise ValueError(f'QueryUpsample reads {len(self.decoders)} '
                             f'levels, got {len(levels)}')
        batch = levels[0][0].shape[0]
        query = batch_queries(self.queries(grid), batch)
        for (tokens,
             level_grid), proj, norm, decoder in zip(levels, self.input_projs,
                                                     self.proj_norms,
                                                     self.decoders):
            if tokens.shape[1] != level_grid[0] * level_grid[1]:
                raise ValueError(f'level tokens of shape {tuple(tokens.shape)}'
                                 f' do not fit the grid {tuple(level_grid)}')
            memory_mask = None
            if self.locality_sigma is not None:
                memory_mask = self.locality_bias(grid, level_grid, tokens)
            query = decoder(query, norm(proj(tokens)), memory_mask=memory_mask)
        return query

    def locality_bias(self, grid: Grid, level_grid: Grid,
                      like: Tensor) -> Tensor:
        """The opt-in locality prior (see ``locality_sigma``).

        Args:
            grid (tuple[int, int]): Output grid (H, W) of the queries.
            level_grid (tuple[int, int]): Grid (h, w) of the level's tokens.
            like (Tensor): Gives dtype and device.

        Returns:
            Tensor: Additive attention bias, shape (H * W, h * w).
        """
        dist2 = cell_distances(grid, level_grid, like).square()
        return -dist2 / (2 * self.locality_sigma**2)

    def extra_repr(self) -> str:
        extra = f'query_grid={self.query_grid}'
        if self.locality_sigma is not None:
            extra += f', locality_sigma={self.locality_sigma} (non-official)'
        if self.query_init != 'normal':
            extra += f', query_init={self.query_init!r}'
        return extra
