"""mmseg's ViT encoder layer with a ``fused_attn`` switch and a lean FFN, and
the layer list of a ViT built from its arguments."""
import inspect
from typing import Optional, Type

import torch
from mmcv.cnn.bricks.drop import DropPath as MMCVDropPath
from mmcv.cnn.bricks.transformer import FFN, MultiheadAttention
from mmseg.models.backbones.vit import (TransformerEncoderLayer,
                                        VisionTransformer)
from timm.layers import DropPath
from torch import Tensor, nn

from .fused_mha import FusedMultiheadAttention, use_fused_attn

__all__ = ['ViTEncoderLayer', 'ViTFFN', 'vit_arguments', 'build_vit_layers']


class ViTFFN(FFN):
    """mmcv's :class:`FFN` (same constructor, parameters and state-dict keys)
    in fewer host steps and kernels, for every forward of a ViT layer.

    * ``forward`` is the parent's computation without mmcv's
      ``deprecated_api_warning`` wrapper, which inspects the signature
      (``inspect.getfullargspec``) on every call: ~20 us of host time per
      layer and call, the time a launch-bound GPU step waits for.
    * Stochastic depth is timm's :class:`timm.layers.DropPath` (per-sample
      ``bernoulli_`` mask scaled by ``1 / keep``: 3 kernels forward, 1
      backward) instead of mmcv's (``rand``, add, ``floor``, ``div``, ``mul``:
      5 and 2). Same distribution: each sample's branch is kept with
      probability ``1 - drop_prob`` and then scaled by ``1 / (1 -
      drop_prob)`` (stochastic depth, Huang et al. 2016, as mmseg's ViT).
      The random draws differ from mmcv's for a given seed.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.dropout_layer, MMCVDropPath):
            self.dropout_layer = DropPath(self.dropout_layer.drop_prob)

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        """FFN branch plus identity.

        Args:
            x (Tensor): Tokens, shape (B, N, C).
            identity (Tensor, optional): Residual, ``x`` if None.

        Returns:
            Tensor: Shape (B, N, C).
        """
        out = self.dropout_layer(self.gamma2(self.layers(x)))
        if not self.add_identity:
            return out
        return (x if identity is None else identity) + out


class ViTEncoderLayer(TransformerEncoderLayer):
    """mmseg's ViT :class:`TransformerEncoderLayer` whose attention is chosen
    by ``fused_attn`` through the base class's ``build_attn`` hook.

    ``fused_attn=True`` builds :class:`FusedMultiheadAttention` (torch's
    ``F.scaled_dot_product_attention``, no (B, heads, N, N) weights kept),
    False mmcv's ``MultiheadAttention``. Parameters and state-dict keys are
    those of mmseg's layer either way. The FFN is :class:`ViTFFN` (mmcv's,
    with fewer host steps and kernels).

    Args:
        *args: Arguments of mmseg's ``TransformerEncoderLayer``.
        fused_attn (bool, optional): See above; None takes the global
            default (:func:`set_fused_attn`, True). Default: None.
        **kwargs: Keyword arguments of mmseg's ``TransformerEncoderLayer``.
    """

    def __init__(self,
                 *args,
                 fused_attn: Optional[bool] = None,
                 **kwargs) -> None:
        # read by build_attn, which the base __init__ calls
        self.fused_attn = use_fused_attn(fused_attn)
        super().__init__(*args, **kwargs)

    def build_attn(self, attn_cfg: dict) -> None:
        cls = FusedMultiheadAttention if self.fused_attn \
            else MultiheadAttention
        self.attn = cls(**attn_cfg)

    def build_ffn(self, ffn_cfg: dict) -> None:
        self.ffn = ViTFFN(**ffn_cfg)


def vit_arguments(vit: VisionTransformer, kwargs: dict) -> dict:
    """All arguments of mmseg's ``VisionTransformer.__init__`` (defaults filled
    in) for the keyword arguments ``kwargs`` it was built with."""
    bound = inspect.signature(VisionTransformer.__init__).bind(vit, **kwargs)
    bound.apply_defaults()
    args = dict(bound.arguments)
    args.pop('self')
    return args


def build_vit_layers(args: dict,
                     fused_attn: Optional[bool] = None,
                     layer_types: Optional[dict] = None) -> nn.ModuleList:
    """The encoder layers mmseg's ``VisionTransformer`` builds, as
    :class:`ViTEncoderLayer` (or another subclass per index).

    Args:
        args (dict): :func:`vit_arguments` of the ViT.
        fused_attn (bool, optional): Of every layer. Default: None (the
            global default).
        layer_types (dict[int, type], optional): Layer index -> subclass of
            :class:`ViTEncoderLayer` to build there instead.

    Returns:
        nn.ModuleList: ``num_layers`` layers with mmseg's arguments,
        including its stochastic-depth rule (drop-path rising linearly from
        0 to ``drop_path_rate``).
    """
    layer_types = layer_types or {}
    num_layers = args['num_layers']
    embed_dims = args['embed_dims']
    drop_path = torch.linspace(0, args['drop_path_rate'], num_layers)
    layers = nn.ModuleList()
    for i in range(num_layers):
        cls: Type[ViTEncoderLayer] = layer_types.get(i, ViTEncoderLayer)
        layers.append(
            cls(embed_dims=embed_dims,
                num_heads=args['num_heads'],
                feedforward_channels=args['mlp_ratio'] * embed_dims,
                attn_drop_rate=args['attn_drop_rate'],
                drop_rate=args['drop_rate'],
                drop_path_rate=drop_path[i].item(),
                num_fcs=args['num_fcs'],
                qkv_bias=args['qkv_bias'],
                act_cfg=args['act_cfg'],
                norm_cfg=args['norm_cfg'],
                with_cp=args['with_cp'],
                batch_first=True,
                fused_attn=fused_attn))
    return layers
