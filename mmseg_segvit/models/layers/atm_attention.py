"""Cross-attention that also returns its pre-softmax similarity map."""
from typing import Optional, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor

__all__ = ['ATMCrossAttention']


@MODELS.register_module()
class ATMCrossAttention(nn.Module):
    """Multi-head cross-attention from queries to tokens (Attention-to-Mask).

    Besides the attended values it returns the similarity ``q.k^T * scale``
    before the softmax, averaged over heads: this is the ATM mask. The
    similarity is computed once and serves both uses (the softmax is taken
    out of place, no copy is kept). When the mask is not wanted the
    attention runs in ``F.scaled_dot_product_attention`` (fused, the
    (B, heads, Q, N) weights are never stored).

    Args:
        embed_dims (int): Channels D of queries and tokens.
        num_heads (int): Number of attention heads; must divide ``embed_dims``.
        qkv_bias (bool): Whether the q, k, v projections have a bias.
            Default: True.
        attn_drop (float): Dropout on the attention weights. Default: 0.1.
        proj_drop (float): Dropout after the output projection. Default: 0.

    A variant for :class:`ATMDecoderLayer` (its ``cross_attn_cfg``) is
    registered in mmseg's ``MODELS``, takes these arguments and returns
    ``(out, mask)`` from ``forward(query, key, need_mask=...)`` as below.
    It sets :attr:`mask_trains_qk` when its ``q`` and ``k`` learn only
    through the returned mask.
    """

    #: Whether ``q`` and ``k`` learn only through the returned mask (the
    #: output does not depend on them differentiably), so that every layer's
    #: mask must be supervised. False here: the softmax weights train them.
    mask_trains_qk: bool = False

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.1,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by '
                             f'num_heads ({num_heads})')
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.scale = self.head_dims**-0.5
        # Separate projections (not a fused qkv): queries and tokens differ.
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.k = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.v = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, heads, N, D / heads)."""
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dims).transpose(1, 2)

    def forward(self,
                query: Tensor,
                key: Tensor,
                value: Optional[Tensor] = None,
                need_mask: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """Attend from queries to tokens.

        Args:
            query (Tensor): Queries, shape (B, Q, D).
            key (Tensor): Tokens, shape (B, N, D).
            value (Tensor, optional): Values, shape (B, N, D); ``key`` if None.
            need_mask (bool): Whether to return the similarity map.

        Returns:
            tuple: ``out`` of shape (B, Q, D) and the head-averaged pre-softmax
            similarity of shape (B, Q, N) (None if ``need_mask`` is False).
        """
        value = key if value is None else value
        b, nq, d = query.shape
        q = self._split_heads(self.q(query))
        k = self._split_heads(self.k(key))
        v = self._split_heads(self.v(value))
        if need_mask:
            sim = (q * self.scale) @ k.transpose(-2, -1)  # (B, h, Q, N)
            mask = sim.mean(dim=1)
            attn = self.attn_drop(sim.softmax(dim=-1))
            out = attn @ v
        else:  # no similarity map wanted: torch's fused kernel
            drop = self.attn_drop.p if self.training else 0.0
            out = F.scaled_dot_product_attention(
                q, k, v, dropout_p=drop, scale=self.scale)
            mask = None
        out = out.transpose(1, 2).reshape(b, nq, d)
        return self.proj_drop(self.proj(out)), mask
