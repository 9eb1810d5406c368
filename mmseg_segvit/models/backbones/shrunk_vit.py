"""ShrunkViT: SegViT's Shrunk backbone (plain ViT + QD + QU)."""
import inspect
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmseg.registry import MODELS
from torch import Tensor, nn

from ...grids import patch_grid
from ...typing_utils import Grid
from ..layers import QDEncoderLayer, QueryUpsample
from ..layers.vit_layer import build_vit_layers
from ..load_checks import check_loaded_qu
from .fused_vit import FusedVisionTransformer
from .vit_loading import PositionTable, checkpoint_initializer

__all__ = ['ShrunkViT']


@MODELS.register_module()
class ShrunkViT(FusedVisionTransformer):
    """Plain ViT that runs its deep layers on a quarter of the tokens.

    The Shrunk structure of SegViT (Zhang et al., NeurIPS 2022): layer
    ``qd_index`` is a query-based down-sampling layer
    (:class:`QDEncoderLayer`), whose queries are the tokens on the stride-2
    sub-grid, so it and every later layer run on the ``ceil(H / 2) x
    ceil(W / 2)`` grid (1/32 of the image with patch 16). The outputs of
    the layers in ``out_indices`` (shallow first) are read by query-based
    up-sampling (:class:`QueryUpsample`), which lays learnable queries on
    the patch grid (H x W, 1/16) and returns a feature map on it.

    Everything else is mmseg's :class:`VisionTransformer` (patch embedding,
    position embedding and its bicubic resize, padding of inputs off the
    patch grid, drop-path, ``with_cp``, ``pre_norm``, ``final_norm``,
    pretrained loading), and the layers keep its parameter names, so
    pretrained ViT checkpoints load as into the plain ViT (the QU weights
    are not in them and keep their initialisation).

    State-dict keys: the plain ViT's (``patch_embed.*``, ``cls_token``,
    ``pos_embed``, ``layers.{i}.*``; the QD layer is ``layers.{qd_index}``
    with the same keys as the other layers) plus ``qu.q.weight``,
    ``qu.input_projs.{j}.*``, ``qu.proj_norms.{j}.*``,
    ``qu.decoders.{j}.layers.{k}.*``. In the official code the ViT part is
    the ``vit_shrink`` backbone and the ``qu.*`` part is the query
    up-sampling of ``TPNATMHead`` (``decode_head.q``,
    ``decode_head.input_proj_{j+1}``, ``decode_head.proj_norm_{j+1}``,
    ``decode_head.decoder_{j+1}``); its ATM part
    (``decode_head.atm.*``) is :class:`ATMHead` with ``use_proj=False`` and
    ``mask_mode='per_layer'``.

    Args:
        qd_index (int): Index of the QD layer. Default: 8.
        out_indices (int | Sequence[int]): Layers whose outputs QU reads,
            in increasing order (high resolution first). Default: (7, 23).
        qu_cfg (dict, optional): Arguments of :class:`QueryUpsample`
            (``embed_dims``, ``num_heads``, ``num_layers``, ``ffn_ratio``,
            ``dropout``, ``query_grid``, ``interpolate_mode``, ``use_proj``,
            ``locality_sigma``, ``query_init``; any other key is a
            ``ValueError`` at build time). By default
            ``embed_dims`` is half the ViT width, ``num_heads`` the ViT's,
            and ``query_grid`` the patch grid of ``img_size``.
        return_levels (bool): Also return the levels QU reads, as
            (B, C, h, w) maps before the QU map. Default: False.
        fused_attn (bool, optional): Fused self-attention in the ViT layers
            and the QD layer (see :class:`FusedVisionTransformer`); QU's
            torch decoder layers always call attention without weights
            (fused). None takes the global default. Default: None.
        **kwargs: Arguments of mmseg's ``VisionTransformer``
            (``output_cls_token`` and ``out_origin`` are not supported).

    Shapes:
        Input (B, 3, H_img, W_img); with patch size p the patch grid is
        ``H = ceil(H_img / p)``, ``W = ceil(W_img / p)``. Output: a tuple
        ending with the QU map of shape (B, D, H, W), D = QU
        ``embed_dims``; with ``return_levels`` it starts with one
        (B, C, h_i, w_i) map per level (``(H, W)`` before the QD layer,
        ``(ceil(H / 2), ceil(W / 2))`` from it on).
    """

    def __init__(self,
                 qd_index: int = 8,
                 out_indices: Union[int, Sequence[int]] = (7, 23),
                 qu_cfg: Optional[dict] = None,
                 return_levels: bool = False,
                 fused_attn: Optional[bool] = None,
                 **kwargs) -> None:
        if kwargs.get('output_cls_token') or kwargs.get('out_origin'):
            raise ValueError(
                'ShrunkViT supports neither output_cls_token nor out_origin: '
                'it outputs the QU map on the patch grid (and, with '
                'return_levels, the levels QU reads); remove them from the '
                'backbone config (with_cls_token=True keeps a class token '
                'inside the ViT)')
        out_indices = ([out_indices]
                       if isinstance(out_indices, int) else list(out_indices))
        num_layers = kwargs.get('num_layers', 12)
        if not 0 <= qd_index < num_layers:
            raise ValueError(f'qd_index ({qd_index}) must index one of the '
                             f'{num_layers} layers')
        if (not out_indices or sorted(set(out_indices)) != out_indices
                or not 0 <= out_indices[0] <= out_indices[-1] < num_layers):
            raise ValueError(f'out_indices must be increasing layer indices '
                             f'below {num_layers}, got {out_indices}')
        self.qd_index = qd_index  # read by _build_layers during __init__
        super().__init__(
            out_indices=out_indices, fused_attn=fused_attn, **kwargs)
        self.return_levels = return_levels
        embed_dims = self._vit_args['embed_dims']

        qu_cfg = dict(qu_cfg or {})
        allowed = set(inspect.signature(QueryUpsample.__init__).parameters)
        allowed -= {'self', 'in_channels', 'num_levels'}
        unknown = sorted(set(qu_cfg) - allowed)
        if unknown:
            raise ValueError(
                f'ShrunkViT qu_cfg has keys QueryUpsample does not take: '
                f'{unknown} (in_channels and num_levels follow the ViT width '
                f'and out_indices); it takes {sorted(allowed)}')
        qu_cfg.setdefault('embed_dims', embed_dims // 2)
        qu_cfg.setdefault('num_heads', self._vit_args['num_heads'])
        if qu_cfg['num_heads'] >= 1 and \
                qu_cfg['embed_dims'] % qu_cfg['num_heads']:
            raise ValueError(
                f"ShrunkViT's query up-sampling has embed_dims="
                f"{qu_cfg['embed_dims']} (qu_cfg.embed_dims; default half "
                f"the ViT width {embed_dims}) and num_heads="
                f"{qu_cfg['num_heads']} (qu_cfg.num_heads; default the "
                "ViT's), which does not divide it: set "
                'backbone.qu_cfg=dict(embed_dims=..., num_heads=...) with '
                'num_heads dividing embed_dims')
        qu_cfg.setdefault('query_grid',
                          patch_grid(self.img_size, self.patch_size))
        qu_cfg.setdefault('interpolate_mode', self.interpolate_mode)
        self.qu = QueryUpsample(
            in_channels=embed_dims, num_levels=len(out_indices), **qu_cfg)
        self._freeze()
        self.register_load_state_dict_pre_hook(check_loaded_qu)

    def _build_layers(self, fused_attn: Optional[bool]) -> nn.ModuleList:
        """The plain ViT's layers with :class:`QDEncoderLayer` at ``qd_index``
        (same drop-path rate of the stochastic depth rule)."""
        return build_vit_layers(self._vit_args, fused_attn,
                                {self.qd_index: QDEncoderLayer})

    #: QU's loading is checked by :func:`check_loaded_qu`.
    separately_checked = ('qu', )

    def position_tables(self) -> Dict[str, PositionTable]:
        """``pos_embed`` and QU's queries ``qu.q.weight`` (on
        ``qu.query_grid``, resized as :meth:`QueryUpsample.queries` resizes
        them at run time)."""
        qu = self.qu

        def resize(table: Tensor, src, dst) -> Tensor:
            return QueryUpsample.resize_queries(
                table.float(), src, dst, qu.interpolate_mode).to(table.dtype)

        return dict(super().position_tables(),
                    **{'qu.q.weight': (qu.query_grid, 0, resize)})

    def init_weights(self) -> None:
        """The plain ViT's initialisation, then
        :meth:`QueryUpsample.init_weights` for QU; or, with a loading
        ``init_cfg``, QU's initialisation and then the checkpoint (whose
        QU weights, if it has them, replace it)."""
        loads, _ = checkpoint_initializer(self.init_cfg)
        super().init_weights()
        if loads is None:
            self.qu.init_weights()

    def _init_outside_checkpoint(self) -> None:
        """QU, before a checkpoint that may not hold it is loaded."""
        self.qu.init_weights()

    def train(self, mode: bool = True) -> 'ShrunkViT':
        """The plain ViT's ``train`` (``norm_eval``), returning ``self`` as
        ``nn.Module.train`` does."""
        super().train(mode)
        return self

    @staticmethod
    def _to_map(tokens: Tensor, grid: Grid) -> Tensor:
        """(B, h * w, C) -> (B, C, h, w)."""
        b, _, c = tokens.shape
        return tokens.transpose(1, 2).reshape(b, c, grid[0], grid[1])

    def _forward_features(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """Run the ViT with QD, then QU (``forward`` calls this).

        Args:
            inputs (Tensor): Images, shape (B, 3, H_img, W_img).

        Returns:
            tuple[Tensor]: ``(qu_map,)`` with ``qu_map`` of shape
            (B, D, H, W) on the patch grid, or ``(*level_maps, qu_map)``
            with ``return_levels``.
        """
        b = inputs.shape[0]
        x, hw_shape = self.patch_embed(inputs)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        x = self._pos_embeding(x, hw_shape, self.pos_embed)
        prefix = 1 if self.with_cls_token else 0
        if not self.with_cls_token:
            x = x[:, 1:]
        if self.pre_norm:
            x = self.pre_ln(x)

        grid = tuple(hw_shape)
        levels: List[Tuple[Tensor, Grid]] = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == self.qd_index:
                x, grid = layer(x, grid, num_prefix_tokens=prefix)
            else:
                x = layer(x)
            if i == last and self.final_norm:
                x = self.norm1(x)
            if i in self.out_indices:
                levels.append((x[:, prefix:], grid))

        qu_map = self._to_map(self.qu(levels, hw_shape), hw_shape)
        if not self.return_levels:
            return (qu_map, )
        return tuple(self._to_map(t, g) for t, g in levels) + (qu_map, )
