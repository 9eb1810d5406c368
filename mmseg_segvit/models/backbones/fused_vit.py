"""mmseg's plain ViT with fused self-attention."""
from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS

from ..layers.fused_mha import fuse_multihead_attention

__all__ = ['FusedVisionTransformer']


@MODELS.register_module()
class FusedVisionTransformer(VisionTransformer):
    """mmseg's ``VisionTransformer`` whose self-attention runs torch's
    ``F.scaled_dot_product_attention``.

    mmseg's encoder layers use mmcv's ``MultiheadAttention``, which makes
    torch compute and average the attention weights it then discards. Here
    each of them becomes a :class:`FusedMultiheadAttention`: the same
    parameters and state-dict keys (checkpoints of ``VisionTransformer``
    load unchanged) and the same outputs within float tolerance, without the
    (B, heads, N, N) weights in memory.

    Args:
        fused_attn (bool): Use the fused attention. False gives exactly
            mmseg's ``VisionTransformer``. Default: True.
        **kwargs: Arguments of mmseg's ``VisionTransformer``.
    """

    def __init__(self, fused_attn: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fused_attn = fused_attn
        if fused_attn:
            fuse_multihead_attention(self.layers)
