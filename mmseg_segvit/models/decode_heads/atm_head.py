"""ATMHead: SegViT's Attention-to-Mask decode head."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import constant_init, trunc_normal_init
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from mmseg.utils import SampleList
from torch import Tensor

from ...typing_utils import Grid, Size
from ..layers import ATMDecoder, build_level_projections, level_channels
from ..layers.amp import autocast_disabled
from ..layers.mask_combination import combine
from ..layers.memory_plan import metric_budget
from ..layers.queries import batch_queries
from ..layers.sizes import traceable_size
from ..layers.weight_casts import batched_weight_casts
from ..load_checks import check_fresh_modules, check_loaded_head
from ..losses import label_accuracy
from .head_checks import (check_inherited_args, check_label_sizes, check_loss,
                          check_own_args, check_unused_args)

__all__ = ['ATMHead']

HeadOutput = Tuple[Tensor, Tensor]


def _is_grid(grid: object) -> bool:
    if not isinstance(grid, Sequence) or len(grid) != 2:
        return False
    for size in grid:
        if isinstance(size, Tensor):
            if size.numel() != 1 or size.is_floating_point():
                return False
        elif isinstance(size, bool) or not hasattr(size, '__index__'):
            return False
    return True


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f'tensor {tuple(x.shape)}'
    if isinstance(x, (tuple, list)):
        return '[' + ', '.join(_describe(v) for v in x) + ']'
    return type(x).__name__


@MODELS.register_module()
class ATMHead(BaseDecodeHead):
    """Attention-to-Mask head of SegViT (Zhang et al., NeurIPS 2022).

    One learnable query per class is refined stage after stage by a small
    transformer decoder attending to a backbone stage (the deepest stage
    first). The head-averaged similarity between queries and tokens in the
    last cross-attention of each stage is that stage's mask; a linear layer
    gives K + 1 class logits per query (the last one is "no object").
    Inference combines them: ``softmax(cls)[..., :K]`` weighs
    ``sigmoid(mask)`` per class.

    ``forward`` returns the class logits and masks of every supervised
    output; ``loss_by_feat`` applies :class:`ATMLoss` to them and
    ``predict_by_feat`` turns the last one into (B, K, H, W) logits, so stock
    ``EncoderDecoder`` training, whole and slide inference work unchanged.

    Args:
        in_channels (int | Sequence[int]): Channels of each used input; an
            int means the same for every stage.
        channels (int, optional): ``BaseDecodeHead``'s classifier width;
            ATMHead's width is ``embed_dims``. Accepted if None or equal to
            ``embed_dims``, refused otherwise. Default: None.
        num_classes (int): K, also the number of queries.
        embed_dims (int): Width D of queries and decoders. Default: 384.
        num_layers (int): Decoder layers per stage. Default: 3.
        num_heads (int): Attention heads. Default: 8.
        use_stages (int): How many inputs are used: the first
            ``use_stages`` of ``in_index``. Default: 3.
        in_index (int | Sequence[int], optional): Which backbone outputs
            feed the head, shallow to deep. Default: ``range(use_stages)``.
        use_proj (bool): Project each stage with Linear(C -> D) + LayerNorm.
            If False the inputs must already have D channels. Default: True.
        mask_mode (str): ``'cumulative'``: one output per stage whose mask is
            the sum of the masks of the stages so far (the ATM head).
            ``'per_layer'``: one output per decoder layer, masks not summed
            (the head of the Shrunk model). Default: 'cumulative'.
        ffn_ratio (int): FFN width as a multiple of D. Default: 4.
        dropout (float): Dropout in the decoder layers. Default: 0.1.
        fast_inference (bool): Combine class probabilities and masks at mask
            resolution and resize the (B, K, h, w) scores, instead of
            resizing the K masks to the input first (the official order).
            Much cheaper; argmax agrees on most but not all pixels.
            Default: False.
        fast_inference_scale (int): In the fast order, first resize the
            mask logits to this multiple of their grid (capped at the output
            size), combine there, then resize the scores: a trade between
            cost and agreement with the faithful order (a scale reaching
            the output size is the faithful order). Default: 4.
        cross_attn_cfg (dict, optional): Cross-attention of the decoder
            layers, built from mmseg's ``MODELS``:
            ``dict(type='ATMCrossAttention')`` (softmax, SegViT; the
            default), ``dict(type='KMeansCrossAttention')`` (kMaX-DeepLab's
            k-means cross-attention; options such as ``update='sum'`` go in
            the dict) or a registered class of one's own
            (:func:`build_cross_attention`). One whose ``q`` and ``k`` learn
            only through the mask (``mask_trains_qk``, as k-means) needs
            the mask of every layer supervised (``mask_mode='per_layer'`` or
            ``num_layers=1``). Default: None.
        decoder_cfg (dict, optional): Further settings of every
            :class:`ATMDecoderLayer`: ``act_cfg`` (the FFN activation,
            default ``dict(type='ReLU')``), ``norm_cfg`` (its three norms,
            default ``dict(type='LN')``) and ``pre_norm`` (pre-norm order,
            as Mask2Former's decoder; default False, the official
            post-norm). The state-dict keys stay the same, so checkpoints
            and converters work with any of them. None: the official
            layer. Default: None.
        fresh_modules (Sequence[str]): Head modules (``'decoders.2'``,
            ``'input_projs'``, ...) that a checkpoint loaded into the whole
            model (``load_from``, ``init_cfg``, ``init_model``) may lack;
            they keep their initialisation and the load says so. The class
            tensors (``q``, ``class_embed``) always may. Any other missing,
            extra or differently shaped head weight is a ``ValueError``
            naming the modules, as is a checkpoint of another class count
            (:func:`~mmseg_segvit.models.load_checks.check_loaded_head`).
            Default: ().
        loss_decode (dict): Config of the loss, an :class:`ATMLoss`; it
            reads the class count and the number of supervised outputs
            (``use_stages``, times ``num_layers`` with
            ``mask_mode='per_layer'``) from the head's outputs.
            Default: ``dict(type='ATMLoss')``.
        dropout_ratio (float): Dropout before ``BaseDecodeHead``'s
            classifier, which ATMHead does not have (its decoder dropout is
            ``dropout``). 0 and MMSeg's default 0.1, which stock head
            configs carry, are accepted and have no effect; other values
            are refused. Default: 0.
        init_cfg (dict, optional): Must be None: :meth:`init_weights`
            initialises the head; a checkpoint is loaded into the whole
            model (``load_from``, ``model.init_cfg``). Default: None.
        **kwargs: Other arguments of ``BaseDecodeHead`` (``ignore_index``,
            ``align_corners``, ...). Those ATMHead cannot honour raise a
            ``ValueError`` naming them when the head is built:
            ``out_channels`` other than ``num_classes``, ``threshold``
            (binary segmentation is ``num_classes=2``), ``sampler``, an
            ``input_transform`` other than ``'multiple_select'``; so does a
            ``loss_decode`` that is not ``ATMLoss`` (:mod:`.head_checks`).
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 channels: Optional[int] = None,
                 *,
                 num_classes: int,
                 embed_dims: int = 384,
                 num_layers: int = 3,
                 num_heads: int = 8,
                 use_stages: int = 3,
                 in_index: Optional[Union[int, Sequence[int]]] = None,
                 use_proj: bool = True,
                 mask_mode: str = 'cumulative',
                 ffn_ratio: int = 4,
                 dropout: float = 0.1,
                 fast_inference: bool = False,
                 fast_inference_scale: int = 4,
                 cross_attn_cfg: Optional[dict] = None,
                 decoder_cfg: Optional[dict] = None,
                 fresh_modules: Sequence[str] = (),
                 loss_decode: dict = dict(type='ATMLoss'),
                 dropout_ratio: float = 0.0,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        if in_index is None:
            in_index = list(range(use_stages)) if isinstance(use_stages,
                                                             int) else []
        in_index = [in_index] if isinstance(in_index, int) else list(in_index)
        check_own_args(num_layers, dropout, ffn_ratio, embed_dims, num_heads,
                       use_stages)
        if not 1 <= use_stages <= len(in_index):
            raise ValueError(f'use_stages ({use_stages}) must be between 1 '
                             f'and the number of inputs in in_index '
                             f'({len(in_index)})')
        in_index = in_index[:use_stages]
        in_channels = level_channels(
            in_channels,
            use_stages,
            embed_dims,
            num_heads, ('stages', 'use_stages'),
            exact=False)
        if mask_mode not in ('cumulative', 'per_layer'):
            raise ValueError(f"mask_mode must be 'cumulative' or 'per_layer',"
                             f' got {mask_mode!r}')
        check_unused_args(channels, embed_dims, dropout_ratio, init_cfg)
        kwargs = check_inherited_args(num_classes, kwargs)
        super().__init__(
            in_channels,
            embed_dims,
            num_classes=num_classes,
            in_index=in_index,
            input_transform='multiple_select',
            loss_decode=loss_decode,
            dropout_ratio=0.0,
            init_cfg=None,
            **kwargs)
        del self.conv_seg  # masks and class logits replace the classifier
        check_loss(self.loss_decode)
        self.embed_dims = embed_dims
        self.use_stages = use_stages
        self.mask_mode = mask_mode
        if fast_inference_scale < 1:
            raise ValueError(f'fast_inference_scale must be >= 1, got '
                             f'{fast_inference_scale}')
        self.fast_inference = fast_inference
        self.fast_inference_scale = fast_inference_scale

        # Stage i works on the i-th deepest input.
        self.input_projs, self.proj_norms = build_level_projections(
            in_channels[::-1], embed_dims, use_proj)
        self.decoders = nn.ModuleList(
            ATMDecoder(
                num_layers,
                embed_dims=embed_dims,
                num_heads=num_heads,
                ffn_ratio=ffn_ratio,
                dropout=dropout,
                cross_attn_cfg=cross_attn_cfg,
                **(decoder_cfg or {})) for _ in self.input_projs)
        cross_attn = self.decoders[0].layers[0].multihead_attn
        if (getattr(cross_attn, 'mask_trains_qk', False)
                and mask_mode == 'cumulative' and num_layers > 1):
            raise ValueError(
                f'{type(cross_attn).__name__} (cross_attn_cfg) trains q and k '
                'of a layer only through its supervised mask, and '
                "mask_mode='cumulative' supervises only the last layer of "
                "each stage: use mask_mode='per_layer' (use_stages * "
                'num_layers supervised outputs) or num_layers=1')
        self.q = nn.Embedding(num_classes, embed_dims)
        self.class_embed = nn.Linear(embed_dims, num_classes + 1)
        self.fresh_modules = check_fresh_modules(self, fresh_modules)
        self.register_load_state_dict_pre_hook(check_loaded_head)

    @property
    def num_outputs(self) -> int:
        """L, how many supervised outputs :meth:`forward` returns: one per
        stage, or one per stage and decoder layer with
        ``mask_mode='per_layer'``."""
        if self.mask_mode == 'per_layer':
            return sum(len(decoder.layers) for decoder in self.decoders)
        return len(self.decoders)

    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) linear layers, unit LayerNorms."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_init(m, std=0.02, bias=0)
            elif isinstance(m, nn.LayerNorm):
                constant_init(m, val=1.0, bias=0.0)
        self._is_init = True

    @staticmethod
    def stage_tokens(x: object, idx: int,
                     channels: Optional[int]) -> Tuple[Tensor, Grid]:
        """One backbone output as (B, H * W, C) tokens and its grid (H, W).

        Args:
            x: A (B, C, H, W) map; a pair ``(tokens (B, H * W, C), (H, W))``;
                or MMSeg's ``[map (B, C, H, W), cls_token (B, C)]``
                (``VisionTransformer(output_cls_token=True)``), whose class
                token is dropped.
            idx (int): Its index among the backbone outputs, for messages.
            channels (int, optional): The ``in_channels`` it must have.

        Raises:
            ValueError: Any other input, or one with other channels; the
                message names the input and ``in_channels``.
        """
        if isinstance(x, (tuple, list)) and len(x) == 2 and isinstance(
                x[0], Tensor) and x[0].dim() == 4 and isinstance(
                    x[1], Tensor) and x[1].dim() == 2:
            # [feature map, class token] of output_cls_token=True
            if x[1].shape != x[0].shape[:2]:
                raise ValueError(
                    f'ATMHead input {idx}: a class token of shape '
                    f'{tuple(x[1].shape)} does not belong to the map of shape '
                    f'{tuple(x[0].shape)}')
            x = x[0]
        if isinstance(x, (tuple, list)):
            if len(x) != 2 or not isinstance(x[0], Tensor) \
                    or not _is_grid(x[1]):
                raise ValueError(
                    f'ATMHead input {idx} is {_describe(x)}; it takes a '
                    '(B, C, H, W) map, a pair (tokens (B, H*W, C), (H, W)) or '
                    'the [map, cls_token] pair of a backbone with '
                    'output_cls_token=True (the class token is not used)')
            tokens, grid = x
            grid = traceable_size(grid)
            if tokens.dim() != 3 or tokens.shape[1] != grid[0] * grid[1]:
                raise ValueError(
                    f'ATMHead input {idx}: tokens of shape '
                    f'{tuple(tokens.shape)} do not fit the grid {grid}')
        elif isinstance(x, Tensor) and x.dim() == 4:
            grid = (x.shape[2], x.shape[3])
            tokens = x.flatten(2).transpose(1, 2)
        else:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x)
            raise ValueError(
                f'ATMHead input {idx} must be a (B, C, H, W) map or '
                f'(tokens (B, N, C), (H, W)), got {shape}; token '
                'sequences need their grid size')
        if channels is not None and tokens.shape[-1] != channels:
            raise ValueError(
                f'ATMHead input {idx} has {tokens.shape[-1]} channels but '
                f'in_channels says {channels}: set '
                'decode_head.in_channels to the backbone output '
                'channels')
        return tokens, grid

    def _to_tokens(self, inputs: Sequence) -> List[Tuple[Tensor, Grid]]:
        """Bring each selected input to tokens with its grid, deepest first.

        An input is a (B, C, H, W) map, a pair ``(tokens, (H, W))`` with
        tokens of shape (B, H * W, C), or the ``[map, cls_token]`` pair of
        a backbone with ``output_cls_token=True`` (the class token is not
        used); see :meth:`stage_tokens`.
        """
        if any(not -len(inputs) <= i < len(inputs) for i in self.in_index):
            raise ValueError(
                f'ATMHead uses backbone outputs {self.in_index} (in_index, '
                f'use_stages={self.use_stages}) but the backbone gives '
                f'{len(inputs)}: lower use_stages / in_index or add '
                'out_indices to the backbone')
        selected = self._transform_inputs(inputs)
        out = [
            self.stage_tokens(x, idx, channels) for idx, x, channels in zip(
                self.in_index, selected, self.in_channels)
        ]
        if any(t.shape[0] != out[0][0].shape[0] for t, _ in out):
            raise ValueError(
                f'ATMHead inputs {self.in_index} (in_index) hold batches of '
                f'{[t.shape[0] for t, _ in out]} images: every backbone '
                'output must hold the same images')
        return out[::-1]

    def forward(self, inputs: Sequence) -> HeadOutput:
        """Compute the class logits and masks of every supervised output.

        Args:
            inputs (Sequence): Backbone outputs: (B, C, H, W) maps or
                ``(tokens (B, H*W, C), (H, W))`` pairs.

        Returns:
            tuple: ``cls_logits`` of shape (L, B, K, K + 1) and
            ``mask_logits`` of shape (L, B, K, h, w) on the grid of the last
            (shallowest) stage; L is the number of supervised outputs and
            the last one is the prediction.
        """
        with batched_weight_casts(self):  # at inference under autocast
            return self._decode(inputs)

    def _decode(self, inputs: Sequence) -> HeadOutput:
        """:meth:`forward`'s computation."""
        stages = self._to_tokens(inputs)
        batch = stages[0][0].shape[0]
        query = batch_queries(self.q.weight, batch)
        all_queries, all_masks = [], []
        per_layer = self.mask_mode == 'per_layer'
        for (tokens,
             grid), proj, norm, decoder in zip(stages, self.input_projs,
                                               self.proj_norms, self.decoders):
            lateral = norm(proj(tokens))
            queries, masks = decoder(query, lateral, all_layers=per_layer)
            query = queries[-1]
            all_queries.extend(queries)
            # reshape, not unflatten: torch's ONNX exporter loses the
            # symbolic grid of unflatten's output and would then bake the
            # shape of every tensor computed from it
            all_masks.extend(
                m.reshape(m.shape[0], m.shape[1], grid[0], grid[1])
                for m in masks)
        size = all_masks[-1].shape[-2:]
        all_masks = torch.stack([
            m if m.shape[-2:] == size else F.interpolate(
                m, size=size, mode='bilinear', align_corners=False)
            for m in all_masks
        ])
        if self.mask_mode == 'cumulative':
            all_masks = all_masks.cumsum(0)
        # one class projection for every output
        return self.class_embed(torch.stack(all_queries)), all_masks

    @staticmethod
    def semantic_inference(cls_logits: Tensor, mask_logits: Tensor) -> Tensor:
        """Per-class scores at the masks' own resolution (no resize).

        Args:
            cls_logits (Tensor): (B, Q, K + 1).
            mask_logits (Tensor): (B, Q, H, W).

        Returns:
            Tensor: (B, K, H, W).
        """
        return combine(cls_logits, mask_logits, mask_logits.shape[-2:])

    def combine_outputs(self,
                        seg_logits: HeadOutput,
                        size: Size,
                        order: Optional[str] = None,
                        **kwargs) -> Tensor:
        """:func:`combine` of the last output, with this head's settings.

        Args:
            seg_logits (tuple): ``forward``'s class logits (L, B, K, K + 1)
                and masks (L, B, K, h, w).
            size (tuple[int, int]): Output size (H, W).
            order (str, optional): ``'faithful'`` or ``'fast'``; default
                from ``fast_inference``.
            **kwargs: ``output`` and ``budget`` of :func:`combine`.

        Returns:
            Tensor: (B, K, H, W) scores or (B, H, W) labels.
        """
        cls_logits, mask_logits = seg_logits
        if order is None:
            order = 'fast' if self.fast_inference else 'faithful'
        return combine(
            cls_logits[-1],
            mask_logits[-1],
            size,
            order=order,
            fast_scale=self.fast_inference_scale,
            align_corners=self.align_corners,
            **kwargs)

    def predict_by_feat(self, seg_logits: HeadOutput,
                        batch_img_metas: List[dict]) -> Tensor:
        """Turn the last output into (B, K, H, W) logits at the input size.

        The masks are resized to the input (the crop in slide inference) before
        the per-class combination, as in the official model; with
        ``fast_inference`` the combination comes first.
        """
        meta = batch_img_metas[0]
        if isinstance(meta['img_shape'], torch.Size):  # slide inference
            size = meta['img_shape']
        elif 'pad_shape' in meta:
            size = meta['pad_shape'][:2]
        else:
            size = meta['img_shape']
        return self.combine_outputs(seg_logits, tuple(size[:2]))

    def loss_by_feat(self, seg_logits: HeadOutput,
                     batch_data_samples: SampleList) -> dict:
        """ATMLoss on every output (in fp32, also under autocast) and the pixel
        accuracy of the prediction (in the inference order).

        Each label map must have the size of its padded image
        (:func:`check_label_sizes`).
        """
        cls_logits, mask_logits = seg_logits
        check_label_sizes(batch_data_samples)
        seg_label = self._stack_batch_gt(batch_data_samples).squeeze(1)
        with autocast_disabled(cls_logits.device):
            cls_logits = cls_logits.float()
            mask_logits = mask_logits.float()
            losses = self.loss_decode(
                cls_logits,
                mask_logits,
                seg_label,
                ignore_index=self.ignore_index)
            with torch.no_grad():
                pred = self.combine_outputs(
                    (cls_logits, mask_logits),
                    tuple(seg_label.shape[-2:]),
                    output='labels',
                    budget=metric_budget(seg_label.device))
                losses['acc_seg'] = label_accuracy(
                    pred, seg_label, ignore_index=self.ignore_index)
        return losses
