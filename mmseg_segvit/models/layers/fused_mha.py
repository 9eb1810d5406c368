"""Self-attention through torch's fused kernel: mmcv's MultiheadAttention
without attention weights, packed self-attention with few kernels, and the
global default of the ``fused_attn`` switch."""
from typing import Optional

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import MultiheadAttention
from torch import Tensor

__all__ = [
    'FusedMultiheadAttention', 'packed_self_attention', 'set_fused_attn',
    'use_fused_attn'
]

_FUSED_ATTN = True


def set_fused_attn(enable: bool = True) -> None:
    """Set the default of every ``fused_attn=None`` switch built afterwards (as
    timm's ``set_fused_attn``). Nothing else changes global state.

    Args:
        enable (bool): Default for modules built later. Default: True.
    """
    global _FUSED_ATTN
    _FUSED_ATTN = bool(enable)


def use_fused_attn(fused_attn: Optional[bool] = None) -> bool:
    """``fused_attn`` if given, else the global default (True unless
    :func:`set_fused_attn` changed it)."""
    return _FUSED_ATTN if fused_attn is None else bool(fused_attn)


def packs_self_attention(attn: nn.MultiheadAttention) -> bool:
    """Whether :func:`packed_self_attention` can run ``attn``: one packed (3C,
    C) input projection, no extra key/value biases or zero attention."""
    return (attn._qkv_same_embed_dim and attn.bias_k is None
            and not attn.add_zero_attn)


def packed_self_attention(attn: nn.MultiheadAttention, x: Tensor) -> Tensor:
    """``attn(x, x, x, need_weights=False)[0]`` for batch-first tokens, in
    fewer kernels.

    torch's packed path (``F.multi_head_attention_forward``) copies q, k
    and v out of the projection and selects them, so its backward fills
    three zero gradients of the whole projection and copies into them;
    here q, k and v are views of one projection (their backward is one
    stack), attended by ``F.scaled_dot_product_attention`` (fused, dropout
    on the weights while training, as ``attn.dropout``), then ``attn``'s
    output projection: the layout of timm's ``Attention``. Same parameters
    (``in_proj_weight``, ``in_proj_bias``, ``out_proj``): checkpoints and
    results are those of ``attn`` (within float rounding).

    Args:
        attn (nn.MultiheadAttention): Weights and settings; see
            :func:`packs_self_attention` for what it must be.
        x (Tensor): Tokens, shape (B, N, C).

    Returns:
        Tensor: Shape (B, N, C).
    """
    batch, tokens, channels = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    # reshape, not unflatten: keeps N symbolic in ONNX exports
    q, k, v = qkv.reshape(batch, tokens, 3, heads, channels // heads).permute(
        2, 0, 3, 1, 4).unbind(0)  # 3 x (B, heads, N, C / heads)
    out = F.scaled_dot_product_attention(
        q, k, v, dropout_p=attn.dropout if attn.training else 0.0)
    out = out.transpose(1, 2).reshape(batch, tokens, channels)
    return attn.out_proj(out)


class FusedMultiheadAttention(MultiheadAttention):
    """:class:`mmcv.cnn.bricks.transformer.MultiheadAttention` that asks
    torch for no attention weights.

    mmcv's wrapper calls ``torch.nn.MultiheadAttention`` with its default
    ``need_weights=True``: torch then computes the (B, heads, N, N) weights
    explicitly and averages them over heads, only for mmcv to drop them.
    With ``need_weights=False`` ``F.multi_head_attention_forward`` runs
    ``F.scaled_dot_product_attention`` instead (a fused kernel that never
    stores the weights, in training too). Same constructor, parameters and
    state-dict keys as the parent: checkpoints load unchanged, outputs agree
    within float tolerance. Self-attention without masks runs
    :func:`packed_self_attention` (fewer kernels, same result).
    """

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Attention with identity connection, as the parent.

        Args:
            query (Tensor): (B, N, C) if ``batch_first`` else (N, B, C).
            key (Tensor, optional): Keys, ``query`` if None.
            value (Tensor, optional): Values, ``key`` if None.
            identity (Tensor, optional): Residual, ``query`` if None.
            query_pos (Tensor, optional): Added to ``query``.
            key_pos (Tensor, optional): Added to ``key`` (``query_pos``
                if None and shapes agree).
            attn_mask (Tensor, optional): Mask of torch's attention.
            key_padding_mask (Tensor, optional): (B, N) padding mask.

        Returns:
            Tensor: Same shape as ``query``.
        """
        key = query if key is None else key
        value = key if value is None else value
        identity = query if identity is None else identity
        if key_pos is None and query_pos is not None \
                and query_pos.shape == key.shape:
            key_pos = query_pos
        if query_pos is not None:
            query = query + query_pos
        if key_pos is not None:
            key = key + key_pos
        if (key is query and value is query and attn_mask is None
                and key_padding_mask is None
                and packs_self_attention(self.attn)):
            out = packed_self_attention(
                self.attn,
                query if self.batch_first else query.transpose(0, 1))
            if not self.batch_first:
                out = out.transpose(0, 1)
            return identity + self.dropout_layer(self.proj_drop(out))
        if self.batch_first:  # torch's module here is sequence first
            query, key, value = (
                t.transpose(0, 1) for t in (query, key, value))
        out = self.attn(
            query,
            key,
            value,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False)[0]
        if self.batch_first:
            out = out.transpose(0, 1)
        return identity + self.dropout_layer(self.proj_drop(out))
