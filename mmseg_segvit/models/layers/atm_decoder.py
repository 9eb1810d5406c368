"""Post-norm transformer decoder whose cross-attention yields ATM masks."""
from typing import Dict, List, Optional, Tuple, Type

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .atm_attention import ATMCrossAttention
from .kmeans_attention import KMeansCrossAttention

__all__ = ['ATMDecoderLayer', 'ATMDecoder', 'CROSS_ATTENTIONS']

# The cross-attentions a decoder layer can use, by config name.
CROSS_ATTENTIONS: Dict[str, Type[ATMCrossAttention]] = {
    'softmax': ATMCrossAttention,
    'kmeans': KMeansCrossAttention,
}


class ATMDecoderLayer(nn.Module):
    """One decoder layer laid out like ``torch.nn.TransformerDecoderLayer``.

    Query self-attention -> add & norm -> cross-attention to the tokens
    (:class:`ATMCrossAttention`) -> add & norm -> FFN (D -> ``ffn_ratio`` D ->
    D, ReLU) -> add & norm. Parameter names follow torch's layer
    (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``,
    ``norm1..3``), so checkpoints of such layers map key by key.

    Args:
        embed_dims (int): Channels D. Default: 256.
        num_heads (int): Attention heads. Default: 8.
        ffn_ratio (int): FFN hidden size as a multiple of D. Default: 4.
        dropout (float): Dropout on residual branches, inside the FFN and on
            both attention maps. Default: 0.1.
        cross_attn (str): ``'softmax'``: :class:`ATMCrossAttention` (softmax
            over tokens, SegViT). ``'kmeans'``: :class:`KMeansCrossAttention`
            (argmax over queries, kMaX-DeepLab); same parameters.
            Default: 'softmax'.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 ffn_ratio: int = 4,
                 dropout: float = 0.1,
                 cross_attn: str = 'softmax') -> None:
        super().__init__()
        if cross_attn not in CROSS_ATTENTIONS:
            raise ValueError(f'cross_attn must be one of '
                             f'{sorted(CROSS_ATTENTIONS)}, got {cross_attn!r}')
        self.self_attn = nn.MultiheadAttention(
            embed_dims, num_heads, dropout=dropout, batch_first=True)
        self.multihead_attn = CROSS_ATTENTIONS[cross_attn](
            embed_dims, num_heads, qkv_bias=True, attn_drop=dropout)
        self.linear1 = nn.Linear(embed_dims, embed_dims * ffn_ratio)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(embed_dims * ffn_ratio, embed_dims)
        self.norm1 = nn.LayerNorm(embed_dims)
        self.norm2 = nn.LayerNorm(embed_dims)
        self.norm3 = nn.LayerNorm(embed_dims)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self,
                query: Tensor,
                tokens: Tensor,
                need_mask: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
        """Update the queries from the tokens.

        Args:
            query (Tensor): Queries, shape (B, Q, D).
            tokens (Tensor): Tokens, shape (B, N, D).
            need_mask (bool): Whether to return the similarity map.

        Returns:
            tuple: Queries (B, Q, D) and the mask (B, Q, N) or None.
        """
        # need_weights=False lets torch take its fused attention kernel.
        x = self.self_attn(query, query, query, need_weights=False)[0]
        query = self.norm1(query + self.dropout1(x))
        x, mask = self.multihead_attn(query, tokens, need_mask=need_mask)
        query = self.norm2(query + self.dropout2(x))
        x = self.linear2(self.dropout(F.relu(self.linear1(query))))
        query = self.norm3(query + self.dropout3(x))
        return query, mask


class ATMDecoder(nn.Module):
    """A stack of :class:`ATMDecoderLayer` (``layers.{i}`` like torch's).

    Args:
        num_layers (int): Number of layers.
        **layer_kwargs: Arguments of :class:`ATMDecoderLayer`.
    """

    def __init__(self, num_layers: int, **layer_kwargs) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f'num_layers must be >= 1, got {num_layers}')
        self.layers = nn.ModuleList(
            ATMDecoderLayer(**layer_kwargs) for _ in range(num_layers))

    def forward(self,
                query: Tensor,
                tokens: Tensor,
                all_layers: bool = False) -> Tuple[List[Tensor], List[Tensor]]:
        """Run all layers.

        Args:
            query (Tensor): Queries, shape (B, Q, D).
            tokens (Tensor): Tokens, shape (B, N, D).
            all_layers (bool): Return the queries and mask of every layer,
                not only of the last one.

        Returns:
            tuple: Lists of queries (B, Q, D) and masks (B, Q, N), one entry
            per layer if ``all_layers`` else one for the last layer.
        """
        queries, masks = [], []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            keep = all_layers or i == last
            query, mask = layer(query, tokens, need_mask=keep)
            if keep:
                queries.append(query)
                masks.append(mask)
        return queries, masks
