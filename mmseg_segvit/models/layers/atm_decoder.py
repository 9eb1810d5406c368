"""Transformer decoder whose cross-attention yields ATM masks."""
from typing import List, Optional, Tuple

import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmseg.registry import MODELS
from torch import Tensor

from .atm_attention import ATMCrossAttention
from .fused_mha import packed_self_attention

__all__ = ['ATMDecoderLayer', 'ATMDecoder', 'build_cross_attention']


def build_cross_attention(cfg: Optional[dict], embed_dims: int, num_heads: int,
                          dropout: float) -> nn.Module:
    """Build an ATM cross-attention from mmseg's ``MODELS``.

    Args:
        cfg (dict, optional): ``dict(type=..., **options)`` of a registered
            cross-attention (:class:`ATMCrossAttention`, the default, or
            :class:`KMeansCrossAttention`, or a class of one's own with
            ``@MODELS.register_module()``). ``embed_dims`` and ``num_heads``
            come from the decoder; ``qkv_bias`` defaults to True and
            ``attn_drop`` to ``dropout``.
        embed_dims (int): Channels D.
        num_heads (int): Attention heads.
        dropout (float): Default ``attn_drop``.

    Returns:
        nn.Module: The cross-attention.

    Raises:
        ValueError: ``type`` is missing, not registered or not a subclass
            of :class:`ATMCrossAttention`, or ``cfg`` sets
            ``embed_dims`` / ``num_heads`` to other values than the
            decoder's.
    """
    cfg = dict(type='ATMCrossAttention') if cfg is None else dict(cfg)
    kind = cfg.get('type')
    if not isinstance(kind, type) and (not isinstance(kind, str)
                                       or MODELS.get(kind) is None):
        raise ValueError(
            f'cross_attn_cfg type {kind!r} is not in mmseg\'s MODELS: use '
            "'ATMCrossAttention' (softmax, SegViT), 'KMeansCrossAttention' "
            '(k-means, kMaX-DeepLab) or a class registered with '
            '@MODELS.register_module()')
    cls = kind if isinstance(kind, type) else MODELS.get(kind)
    if not (isinstance(cls, type) and issubclass(cls, ATMCrossAttention)):
        raise ValueError(
            f'cross_attn_cfg type {kind!r} is not an ATMCrossAttention: a '
            'cross-attention variant subclasses it (same forward: queries, '
            'tokens, need_mask -> queries and the (B, Q, N) mask)')
    for key, value in (('embed_dims', embed_dims), ('num_heads', num_heads)):
        if cfg.setdefault(key, value) != value:
            raise ValueError(
                f'cross_attn_cfg sets {key}={cfg[key]} but the decoder has '
                f'{key}={value}: leave it out, the decoder passes its own')
    cfg.setdefault('qkv_bias', True)
    cfg.setdefault('attn_drop', dropout)
    return MODELS.build(cfg)


class ATMDecoderLayer(nn.Module):
    """One decoder layer laid out like ``torch.nn.TransformerDecoderLayer``.

    Query self-attention, cross-attention to the tokens
    (:class:`ATMCrossAttention`, which also gives the attention-to-mask
    map) and an FFN (D -> ``ffn_ratio`` D -> D), each a residual branch
    with its own norm. Post-norm (the official SegViT layer, torch's
    default): ``x = norm(x + branch(x))``; pre-norm (torch's
    ``norm_first=True``, Mask2Former's ``pre_norm``):
    ``x = x + branch(norm(x))``, the cross-attention (and its mask) then
    reading the normalised queries. Parameter names follow torch's layer
    (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``,
    ``norm1..3``) whatever the settings, so checkpoints of such layers map
    key by key.

    Args:
        embed_dims (int): Channels D. Default: 256.
        num_heads (int): Attention heads. Default: 8.
        ffn_ratio (int): FFN hidden size as a multiple of D. Default: 4.
        dropout (float): Dropout on residual branches, inside the FFN and on
            both attention maps. Default: 0.1.
        cross_attn_cfg (dict, optional): The cross-attention, built from
            mmseg's ``MODELS`` (:func:`build_cross_attention`):
            ``dict(type='ATMCrossAttention')`` (softmax over tokens, SegViT;
            the default) or ``dict(type='KMeansCrossAttention')`` (argmax
            over queries, kMaX-DeepLab; same parameters). Default: None.
        act_cfg (dict): Activation inside the FFN (mmcv's
            ``build_activation_layer``). Default: ``dict(type='ReLU')``.
        norm_cfg (dict): The three norms (mmcv's ``build_norm_layer``).
            Default: ``dict(type='LN')``.
        pre_norm (bool): Pre-norm order instead of the official post-norm.
            Default: False.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 ffn_ratio: int = 4,
                 dropout: float = 0.1,
                 cross_attn_cfg: Optional[dict] = None,
                 act_cfg: dict = dict(type='ReLU'),
                 norm_cfg: dict = dict(type='LN'),
                 pre_norm: bool = False) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.self_attn = nn.MultiheadAttention(
            embed_dims, num_heads, dropout=dropout, batch_first=True)
        self.multihead_attn = build_cross_attention(cross_attn_cfg, embed_dims,
                                                    num_heads, dropout)
        self.linear1 = nn.Linear(embed_dims, embed_dims * ffn_ratio)
        self.activation = build_activation_layer(act_cfg)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(embed_dims * ffn_ratio, embed_dims)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.norm3 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def _ffn(self, query: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(query))))

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
        if self.pre_norm:
            # torch's attention without weights, in fewer kernels
            query = query + self.dropout1(
                packed_self_attention(self.self_attn, self.norm1(query)))
            x, mask = self.multihead_attn(
                self.norm2(query), tokens, need_mask=need_mask)
            query = query + self.dropout2(x)
            query = query + self.dropout3(self._ffn(self.norm3(query)))
            return query, mask
        x = packed_self_attention(self.self_attn, query)
        query = self.norm1(query + self.dropout1(x))
        x, mask = self.multihead_attn(query, tokens, need_mask=need_mask)
        query = self.norm2(query + self.dropout2(x))
        query = self.norm3(query + self.dropout3(self._ffn(query)))
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
