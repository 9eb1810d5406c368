"""mmseg's plain ViT with a ``fused_attn`` switch."""
from typing import Dict, Optional, Tuple

from mmengine.model import initialize
from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS
from torch import Tensor

from ..layers.vit_layer import build_vit_layers, vit_arguments
from ..layers.weight_casts import batched_weight_casts
from .vit_loading import (PositionTable, check_loaded_vit,
                          checkpoint_initializer, fit_position_tables,
                          position_table_of_vit, record_position_grids)

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

    Loading (:mod:`.vit_loading`): every loading path fills every tensor
    or fails naming the missing ones. A checkpoint of another crop loads
    with its position embedding resized from its own grid (recorded in the
    checkpoint by this backbone, or the released grid for its length);
    ``init_cfg`` of type ``Pretrained`` (with or without ``prefix``),
    ``Pretrained_Part`` and ``ViTPretrained`` all load through
    :class:`~mmseg_segvit.checkpoints.ViTPretrained`, strictly.

    Args:
        fused_attn (bool, optional): Use the fused attention; False gives
            exactly mmseg's attention. None takes the global default
            (:func:`set_fused_attn`, True). Default: None.
        **kwargs: Arguments of mmseg's ``VisionTransformer``.
    """

    #: Modules whose loading another check covers (see ShrunkViT).
    separately_checked: Tuple[str, ...] = ()

    def __init__(self, fused_attn: Optional[bool] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._vit_args = vit_arguments(self, kwargs)
        self.layers = self._build_layers(fused_attn)
        self.fused_attn = all(layer.fused_attn for layer in self.layers)
        self._freeze()  # the new layers, as mmseg froze the old ones
        self.register_state_dict_post_hook(record_position_grids)
        self.register_load_state_dict_pre_hook(fit_position_tables)
        self.register_load_state_dict_pre_hook(check_loaded_vit)

    def position_tables(self) -> Dict[str, PositionTable]:
        """State-dict keys of the tables laid on a grid, with that grid,
        the rows before it and their resize (``pos_embed``)."""
        return position_table_of_vit(self)

    def init_weights(self) -> None:
        """mmseg's initialisation, or a checkpoint's weights.

        With a loading ``init_cfg`` (``Pretrained``, ``Pretrained_Part``,
        ``ViTPretrained``) the other ``init_cfg`` entries are applied
        first, then :meth:`_init_outside_checkpoint`, then the checkpoint
        is loaded by :class:`~mmseg_segvit.checkpoints.ViTPretrained`.
        """
        loader, others = checkpoint_initializer(self.init_cfg)
        if loader is None:
            super().init_weights()
            return
        if others:
            initialize(self, others)
        self._init_outside_checkpoint()
        loader(self)
        self._is_init = True

    def _init_outside_checkpoint(self) -> None:
        """Initialise what a ViT checkpoint may lack (subclasses)."""

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
