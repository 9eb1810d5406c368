"""mmcv's MultiheadAttention without attention weights (fused kernel), and
the global default of the ``fused_attn`` switch."""
from typing import Optional

from mmcv.cnn.bricks.transformer import MultiheadAttention
from torch import Tensor

__all__ = ['FusedMultiheadAttention', 'set_fused_attn', 'use_fused_attn']

_FUSED_ATTN = True


def set_fused_attn(enable: bool = True) -> None:
    """Set the default of every ``fused_attn=None`` switch built afterwards
    (as timm's ``set_fused_attn``). Nothing else changes global state.

    Args:
        enable (bool): Default for modules built later. Default: True.
    """
    global _FUSED_ATTN
    _FUSED_ATTN = bool(enable)


def use_fused_attn(fused_attn: Optional[bool] = None) -> bool:
    """``fused_attn`` if given, else the global default (True unless
    :func:`set_fused_attn` changed it)."""
    return _FUSED_ATTN if fused_attn is None else bool(fused_attn)


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
    within float tolerance.
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
