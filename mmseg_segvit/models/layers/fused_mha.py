"""mmcv's MultiheadAttention without attention weights (fused kernel)."""
from typing import Optional

import torch.nn as nn
from mmcv.cnn.bricks.transformer import MultiheadAttention
from torch import Tensor

__all__ = ['FusedMultiheadAttention', 'fuse_multihead_attention']


class FusedMultiheadAttention(MultiheadAttention):
    """:class:`mmcv.cnn.bricks.transformer.MultiheadAttention` that asks
    torch for no attention weights.

    mmcv's wrapper calls ``torch.nn.MultiheadAttention`` with its default
    ``need_weights=True``: torch then computes the (B, heads, N, N) weights
    explicitly and averages them over heads, only for mmcv to drop them.
    With ``need_weights=False`` ``F.multi_head_attention_forward`` runs
    ``F.scaled_dot_product_attention`` instead (a fused kernel that never
    stores the weights, in training too). Same parameters and state-dict
    keys as the parent: checkpoints load unchanged, outputs agree within
    float tolerance.
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
        if self.batch_first:  # torch's module here is sequence first
            query, key, value = (t.transpose(0, 1)
                                 for t in (query, key, value))
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


def fuse_multihead_attention(module: nn.Module) -> int:
    """Switch every mmcv ``MultiheadAttention`` inside ``module`` to
    :class:`FusedMultiheadAttention`, in place.

    The subclass adds no parameter, buffer or attribute, so only the class
    of each instance changes; weights stay where they are.

    Args:
        module (nn.Module): Any module, e.g. mmseg's ``VisionTransformer``.

    Returns:
        int: How many attention modules were switched.
    """
    count = 0
    for m in module.modules():
        if type(m) is MultiheadAttention:
            m.__class__ = FusedMultiheadAttention
            count += 1
    return count
