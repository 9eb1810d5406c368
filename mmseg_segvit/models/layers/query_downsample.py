"""Query-based down-sampling (QD) of SegViT's Shrunk structure."""
from typing import Tuple

import torch
import torch.utils.checkpoint as cp
from torch import Tensor

from ...typing_utils import Grid
from .vit_layer import ViTEncoderLayer

__all__ = ['stride2_grid_tokens', 'QDEncoderLayer']


def stride2_grid_tokens(tokens: Tensor, grid: Grid) -> Tuple[Tensor, Grid]:
    """Keep the tokens of every second row and column (nearest, stride 2).

    The kept tokens are those at even row and even column indices, so the
    first row and column are always kept and a grid of H x W becomes
    ``ceil(H / 2) x ceil(W / 2)``: 40x40 -> 20x20, 33x41 -> 17x21 (the
    last, odd row and column are kept).

    Args:
        tokens (Tensor): Grid tokens in row-major order, shape (B, H * W, C).
        grid (tuple[int, int]): (H, W).

    Returns:
        tuple: Tokens of shape (B, ceil(H / 2) * ceil(W / 2), C) and their
        grid ``(ceil(H / 2), ceil(W / 2))``.
    """
    h, w = grid
    b, n, c = tokens.shape
    if n != h * w:
        raise ValueError(f'{n} tokens do not fit the grid {tuple(grid)}')
    sub = tokens.reshape(b, h, w, c)[:, ::2, ::2]
    sub_grid = (sub.shape[1], sub.shape[2])
    return sub.reshape(b, -1, c), sub_grid


class QDEncoderLayer(ViTEncoderLayer):
    """ViT encoder layer that halves the token grid (query down-sampling).

    The queries of its self-attention are the tokens on the stride-2
    sub-grid (:func:`stride2_grid_tokens`), keys and values are all tokens;
    the residual branch starts from the sampled tokens, so the layer outputs
    a quarter of the tokens (``ceil(H / 2) * ceil(W / 2)``) and every later
    layer runs on the smaller grid.

    It is :class:`ViTEncoderLayer` (mmseg's ViT layer with the
    ``fused_attn`` switch) with another forward: the
    parameters (``ln1``, ``attn.attn.*``, ``ln2``, ``ffn.*``) are those of a
    plain ViT layer, so pretrained ViT weights load unchanged. It computes
    what the shrink layer of the official ``vit_shrink`` backbone computes
    (``ShrinkLayer.forward(x, shrink=True)``): ``norm1`` is applied per
    token, so normalising all tokens once and sampling the queries from the
    result is the same as normalising the sampled tokens again.

    Args:
        *args: Arguments of :class:`ViTEncoderLayer`.
        **kwargs: Keyword arguments of :class:`ViTEncoderLayer`
            (``with_cp``, ``drop_path_rate`` and ``fused_attn`` act as in
            the plain layer).
    """

    def forward(self,
                x: Tensor,
                grid: Grid,
                num_prefix_tokens: int = 0) -> Tuple[Tensor, Grid]:
        """Attend from the sampled tokens to all tokens.

        Args:
            x (Tensor): Tokens, shape (B, P + H * W, C): ``P`` prefix tokens
                (a class token) followed by the grid in row-major order.
            grid (tuple[int, int]): (H, W).
            num_prefix_tokens (int): ``P``. Prefix tokens stay queries (and
                keys). Default: 0.

        Returns:
            tuple: Tokens of shape (B, P + h * w, C) and the grid ``(h, w)``
            with ``h = ceil(H / 2)``, ``w = ceil(W / 2)``.
        """
        prefix = num_prefix_tokens
        _, sub_grid = stride2_grid_tokens(x[:1, prefix:, :1], grid)

        def sample(t: Tensor) -> Tensor:
            sub, _ = stride2_grid_tokens(t[:, prefix:], grid)
            return torch.cat((t[:, :prefix], sub), dim=1) if prefix else sub

        def _inner_forward(x: Tensor) -> Tensor:
            kv = self.norm1(x)
            out = self.attn(sample(kv), key=kv, value=kv, identity=sample(x))
            return self.ffn(self.norm2(out), identity=out)

        if self.with_cp and x.requires_grad:
            x = cp.checkpoint(_inner_forward, x, use_reentrant=False)
        else:
            x = _inner_forward(x)
        return x, sub_grid
