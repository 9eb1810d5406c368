"""mmseg's plain ViT with a ``fused_attn`` switch and an optional 2D sine-
cosine position table."""
from typing import Dict, Optional, Tuple

import torch
from mmengine.model import initialize
from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS
from timm.layers import build_sincos2d_pos_embed
from torch import Tensor

from ...grids import patch_grid
from ...typing_utils import Grid
from ..layers.vit_layer import build_vit_layers, vit_arguments
from ..layers.weight_casts import batched_weight_casts
from .vit_loading import (PositionTable, check_loaded_vit,
                          checkpoint_initializer, fit_position_tables,
                          position_table_of_vit, record_position_grids)

__all__ = ['FusedVisionTransformer', 'sincos_pos_embed']

POS_EMBED_INITS = ('trunc_normal', 'sincos')


def sincos_pos_embed(grid: Grid, embed_dims: int) -> Tensor:
    """The fixed 2D sine-cosine position table of MAE (He et al., CVPR 2022,
    after Vaswani et al.'s 1D table), in mmseg's ``pos_embed`` layout.

    A quarter of the channels are sines of the row index, a quarter sines of
    the column index, then the cosines, at frequencies
    ``10000 ** (-k / (embed_dims / 4))`` (timm's
    ``build_sincos2d_pos_embed``). Every entry lies in [-1, 1] and every
    token's row has norm ``sqrt(embed_dims / 2)``; the class token's row is
    zero, as in MAE.

    Args:
        grid (tuple[int, int]): Patch grid (H, W), row-major.
        embed_dims (int): Channels C, a multiple of 4.

    Returns:
        Tensor: Shape (1, 1 + H * W, C), class-token row first.

    Raises:
        ValueError: If ``embed_dims`` is not a multiple of 4.
    """
    if embed_dims % 4:
        raise ValueError(f"pos_embed_init='sincos' needs embed_dims divisible "
                         f'by 4 (a sine and a cosine per axis), got '
                         f'{embed_dims}: change embed_dims or use '
                         "pos_embed_init='trunc_normal'")
    table = build_sincos2d_pos_embed(list(grid), dim=embed_dims)
    return torch.cat([table.new_zeros(1, embed_dims), table])[None]


@MODELS.register_module()
class FusedVisionTransformer(VisionTransformer):
    """mmseg's ``VisionTransformer`` whose self-attention can run torch's fused
    ``F.scaled_dot_product_attention``.

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

    The position table (``pos_embed``, same key and shape either way)
    starts as mmseg's (truncated normal, std 0.02) or, with
    ``pos_embed_init='sincos'``, as MAE's fixed 2D sine-cosine table
    (:func:`sincos_pos_embed`), which carries each token's place from the
    first step (for a ViT trained from scratch, such as the demo's, where
    a learned table stays near zero when the head needs no position).
    Weights loaded through ``init_cfg`` / ``pretrained`` replace either
    start.

    Args:
        fused_attn (bool, optional): Use the fused attention; False gives
            exactly mmseg's attention. None takes the global default
            (:func:`set_fused_attn`, True). Default: None.
        pos_embed_init (str): ``'trunc_normal'`` (mmseg's) or ``'sincos'``.
            Used when the backbone has no ``init_cfg`` (training from
            scratch). Default: ``'trunc_normal'``.
        pos_embed_trainable (bool): False keeps ``pos_embed`` fixed
            (``requires_grad=False``; still in the state dict), as MAE
            keeps its sine-cosine table. Default: True.
        **kwargs: Arguments of mmseg's ``VisionTransformer``.

    Raises:
        ValueError: For an unknown ``pos_embed_init``, or ``'sincos'`` with
            ``embed_dims`` not a multiple of 4.
    """

    #: Modules whose loading another check covers (see ShrunkViT).
    separately_checked: Tuple[str, ...] = ()

    def __init__(self,
                 fused_attn: Optional[bool] = None,
                 pos_embed_init: str = 'trunc_normal',
                 pos_embed_trainable: bool = True,
                 **kwargs) -> None:
        if pos_embed_init not in POS_EMBED_INITS:
            raise ValueError(f'pos_embed_init must be one of '
                             f'{POS_EMBED_INITS}, got {pos_embed_init!r}')
        super().__init__(**kwargs)
        self._vit_args = vit_arguments(self, kwargs)
        self.pos_embed_init = pos_embed_init
        if pos_embed_init == 'sincos':
            # checked at build time, not first at init_weights
            sincos_pos_embed((1, 1), self._vit_args['embed_dims'])
        self.pos_embed.requires_grad_(pos_embed_trainable)
        self.layers = self._build_layers(fused_attn)
        self.fused_attn = all(layer.fused_attn for layer in self.layers)
        self._freeze()  # the new layers, as mmseg froze the old ones
        self.register_state_dict_post_hook(record_position_grids)
        self.register_load_state_dict_pre_hook(fit_position_tables)
        self.register_load_state_dict_pre_hook(check_loaded_vit)

    def position_tables(self) -> Dict[str, PositionTable]:
        """State-dict keys of the tables laid on a grid, with that grid, the
        rows before it and their resize (``pos_embed``)."""
        return position_table_of_vit(self)

    def init_weights(self) -> None:
        """mmseg's initialisation (from scratch with
        ``pos_embed_init='sincos'``, the sine-cosine table on the patch grid of
        ``img_size``), or a checkpoint's weights.

        With a loading ``init_cfg`` (``Pretrained``, ``Pretrained_Part``,
        ``ViTPretrained``) the other ``init_cfg`` entries are applied first,
        then :meth:`_init_outside_checkpoint`, then the checkpoint is loaded by
        :class:`~mmseg_segvit.checkpoints.ViTPretrained`.
        """
        loader, others = checkpoint_initializer(self.init_cfg)
        if loader is None:
            super().init_weights()
            if self.init_cfg is None and self.pos_embed_init == 'sincos':
                # from scratch: the sine-cosine table on img_size's grid
                grid = patch_grid(self.img_size, self.patch_size)
                with torch.no_grad():
                    self.pos_embed.copy_(
                        sincos_pos_embed(grid, self.pos_embed.shape[-1]))
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
        """The backbone's outputs (:meth:`_forward_features`), with the weight
        casts batched at inference under autocast.

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
