"""mmseg's plain ViT with a ``fused_attn`` switch."""
from typing import Optional, Tuple

from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS
from torch import Tensor

from ..layers.vit_layer import build_vit_layers, vit_arguments
from ..layers.weight_casts import batched_weight_casts

__all__ = ['FusedVisionTransformer']


@MODELS.register_module()
class FusedVisionTransformer(VisionTransformer):
    """mmseg's ``VisionTransformer`` whose self-attention can run torch's
    fused ``F.scaled_dot_product_attention``.

    mmseg's encoder layers use mmcv's ``MultiheadAttention``, which makes
    torch compute and average the attention weights it then discards. Here
    the layers are :class:`ViTEncoderLayer` s, which build
    :class:`FusedMultiheadAttention` through mmseg's ``build_attn`` hook
    when ``fused_attn`` is on: the same parameters and state-dict keys
    (checkpoints of ``VisionTransformer`` load unchanged) and the same
    outputs within float tolerance, without the (B, heads, N, N) weights in
    memory. At inference under autocast its weights are cast to the
    autocast dtype in one multi-tensor copy per call
    (:func:`~mmseg_segvit.models.layers.batched_weight_casts`; same
    outputs).

    Args:
        fused_attn (bool, optional): Use the fused attention; False gives
            exactly mmseg's attention. None takes the global default
            (:func:`set_fused_attn`, True). Default: None.
        **kwargs: Arguments of mmseg's ``VisionTransformer``.
    """

    def __init__(self, fused_attn: Optional[bool] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._vit_args = vit_arguments(self, kwargs)
        self.layers = self._build_layers(fused_attn)
        self.fused_attn = all(layer.fused_attn for layer in self.layers)
        self._freeze()  # the new layers, as mmseg froze the old ones

    def _build_layers(self, fused_attn: Optional[bool]):
        """The encoder layers (subclasses put their own at some indices)."""
        return build_vit_layers(self._vit_args, fused_attn)

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """The backbone's outputs (:meth:`_forward_features`), with the
        weight casts batched at inference under autocast.

        Args:
            inputs (Tensor): Images, shape (B, 3, H, W).

        Returns:
            tuple[Tensor]: As mmseg's ``VisionTransformer``: (B, C, h, w)
            maps of the ``out_indices`` layers.
        """
        with batched_weight_casts(self):
            return self._forward_features(inputs)

    def _forward_features(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """mmseg's ``VisionTransformer.forward`` (subclasses replace it)."""
        return super().forward(inputs)
