"""TimmViT: timm's plain ViTs (DINOv2, DINOv3, BEiT-v2, EVA-02) for ATMHead."""
import difflib
import inspect
import math
import types
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor, nn

from ...pos_table import (TIMM_RULE, PosTableRule, pos_table_rule,
                          resize_pos_table)
from ...typing_utils import Grid, Size
from ..load_checks import compare_keys, modules_of
from .vit_loading import (PositionTable, fit_position_tables,
                          record_position_grids)

__all__ = ['TimmViT', 'center_pad', 'center_pad_amounts']

#: ``init_cfg`` types TimmViT loads itself (see :meth:`TimmViT.init_weights`).
PRETRAINED_TYPES = ('Pretrained', 'TimmPretrained')


def center_pad_amounts(size: int, multiple: int) -> Tuple[int, int]:
    """(before, after) zero padding that brings ``size`` to a multiple.

    The split of ``CenterPadding`` in the official DINOv2 code
    (``dinov2/hub/utils.py``): ``before = pad // 2``, ``after`` the rest.
    """
    pad = -size % multiple
    return pad // 2, pad - pad // 2


def center_pad(images: Tensor, multiple: int) -> Tensor:
    """Zero-pad (B, C, H, W) images on both sides of H and W to a multiple.

    Args:
        images (Tensor): (B, C, H, W), normalised (0 is the mean colour).
        multiple (int): Patch size.

    Returns:
        Tensor: (B, C, ceil(H / p) * p, ceil(W / p) * p); ``images`` when
        nothing is padded.
    """
    top, bottom = center_pad_amounts(images.shape[-2], multiple)
    left, right = center_pad_amounts(images.shape[-1], multiple)
    tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()
    if not tracing and not (top or bottom or left or right):
        return images  # a traced graph pads always: the amounts vary
    return F.pad(images, (left, right, top, bottom))


def padded_size(img_size: Union[int, Sequence[int]], patch: int) -> Size:
    """``img_size`` rounded up to a multiple of the patch."""
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    h, w = (int(s) for s in img_size)
    return math.ceil(h / patch) * patch, math.ceil(w / patch) * patch


def _official_pos_embed(vit: nn.Module, rule: PosTableRule,
                        x: Tensor) -> Tensor:
    """timm ``VisionTransformer._pos_embed`` with the table resized by ``rule``
    (bound to one model instance by :class:`TimmViT`).

    Args:
        vit (nn.Module): The timm ``VisionTransformer``.
        rule (PosTableRule): How the table is resized to the input's grid.
        x (Tensor): Patch embeddings, (B, H, W, C) (``dynamic_img_size``).

    Returns:
        Tensor: (B, prefix + H * W, C) tokens with positions added.
    """
    b, h, w, c = x.shape
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    pos_embed = resize_pos_table(vit.pos_embed, vit.patch_embed.grid_size,
                                 (h, w), prefix, rule)
    x = x.view(b, -1, c)
    to_cat = []
    if vit.cls_token is not None:
        to_cat.append(vit.cls_token.expand(b, -1, -1))
    if vit.reg_token is not None:
        to_cat.append(vit.reg_token.expand(b, -1, -1))
    if vit.no_embed_class:
        x = x + pos_embed
        if to_cat:
            x = torch.cat(to_cat + [x], dim=1)
    else:
        if to_cat:
            x = torch.cat(to_cat + [x], dim=1)
        x = x + pos_embed
    return vit.pos_drop(x)


def check_loaded_backbone(backbone: 'TimmViT', state_dict: dict, prefix: str,
                          *args) -> None:
    """Load-state pre-hook: refuse a whole-model checkpoint that would leave
    backbone weights at their initialisation.

    A segmentor checkpoint (``load_from``, ``init_model``; prefix
    ``backbone.``) must carry every tensor of the backbone with its shape and
    no other (see :mod:`~mmseg_segvit.models.load_checks`). Pretrained weights
    go through ``init_cfg`` (:func:`~mmseg_segvit.checkpoints.
    load_timm_backbone`, strict as well).
    """
    if not prefix:
        return
    report = compare_keys(
        backbone.state_dict(keep_vars=True), state_dict, prefix)
    if report.missing or report.unexpected or report.mismatched:
        what = []
        if report.missing:
            inner = [
                k[len('vit.'):] if k.startswith('vit.') else k
                for k in report.missing
            ]
            what.append(f'lacks {len(report.missing)} tensor(s) of '
                        f'{modules_of(inner)}')
        if report.unexpected:
            what.append(f'has {len(report.unexpected)} backbone tensor(s) '
                        f'the model does not have '
                        f'({", ".join(report.unexpected[:4])})')
        if report.mismatched:
            what.append('has tensors of other shapes: ' +
                        '; '.join(report.mismatched[:3]))
        raise ValueError(
            'the checkpoint ' + ' and '.join(what) + f' under {prefix!r} '
            f'(TimmViT {backbone.model_name}, out_indices='
            f'{backbone.out_indices}), '
            'which would leave weights at their initialisation. Load a '
            'checkpoint of the same backbone settings; pretrained backbone '
            "files go in backbone.init_cfg=dict(type='Pretrained', "
            'checkpoint=...)')


@MODELS.register_module()
class TimmViT(BaseModule):
    """A plain ViT of timm, by name, whose chosen blocks feed ATMHead.

    Builds ``timm.create_model(model_name, pretrained=False, ...)`` (nothing
    is downloaded) as ``self.vit``, so its parameters are named
    ``vit.patch_embed.*``, ``vit.cls_token``, ``vit.reg_token``,
    ``vit.pos_embed``, ``vit.blocks.{i}.*``. Supported and tested: timm's
    ``vit_*_patch14_dinov2``, ``vit_*_patch14_reg4_dinov2``,
    ``vit_*_patch16_dinov3[_qkvb]``, ``beitv2_*`` and ``eva02_*``; other
    models of timm's ``vision_transformer``, ``eva`` and ``beit`` modules
    build too (any other timm model is refused).

    The forward is timm's ``forward_intermediates(x, indices=out_indices,
    norm=False, output_fmt='NCHW', intermediates_only=True)``: the raw
    outputs of the chosen blocks (as the official DINOv2 / DINOv3
    ``get_intermediate_layers(x, n=..., reshape=True, norm=False)``), class
    and register tokens removed, each a (B, C, H / p, W / p) map whose
    shape carries its grid to ATMHead. Blocks after the last out index, the
    final norm and the classifier are removed from the model
    (``prune_intermediate_layers``): they would never get gradients.
    ``num_blocks`` keeps the depth of the full model, ``len(vit.blocks)``
    is the depth kept.

    Inputs whose sides are no multiple of the patch (512 with DINOv2's 14)
    are zero-padded on both sides to the next multiple, as the official
    DINOv2 segmentation code does (``CenterPadding`` in
    ``dinov2/hub/utils.py``; 0 is the mean colour after normalisation):
    the grid is ``(ceil(H / p), ceil(W / p))``, no pixel is lost or
    resampled and the crop keeps the features the model was evaluated
    with; ATMHead's masks are resized to the (unpadded) image as for any
    backbone, so the padding shifts them by at most p / 2 pixels.

    DINOv3 models rescale their RoPE coordinates by a random factor in
    [1/2, 2] in training mode, as the official models do
    (``pos_embed_rope_rescale_coords=2`` in ``dinov3/hub/backbones.py``;
    timm's definitions leave it out); ``model_kwargs=dict(
    rope_rescale_coords=None)`` turns it off. In eval mode (and frozen)
    the coordinates are the official fixed ones.

    Position tables: models with a learned table are built on the grid of
    ``img_size`` (padded); the table of a loaded file is resized to it, and
    at run time to the grid of an input of another size, by the rule of
    the official code (:func:`~mmseg_segvit.pos_table_rule`;
    DINOv2 differs from timm). RoPE models (DINOv3, the rotary part of
    EVA-02) take any grid. BEiT-v2's relative position tables are fixed to
    the window of ``img_size``: inputs of another grid are refused (use
    slide inference at ``img_size``).

    Args:
        model_name (str): timm model name, e.g. ``'vit_large_patch14_dinov2'``.
        img_size (int | Sequence[int]): Training crop (H, W); the model's
            position table and windows are built for it (rounded up to the
            patch). Default: (512, 512).
        out_indices (Sequence[int], optional): Blocks whose outputs are
            returned, shallow first; negative indices count from the end.
            Default: three evenly spaced blocks ending with the last
            (7, 15, 23 for 24 blocks).
        drop_path_rate (float): Stochastic depth of the last block (timm's
            linear rule). Default: 0.
        with_cp (bool): Activation checkpointing of every block (timm's
            ``set_grad_checkpointing``). Default: False.
        frozen (bool): No gradients to any backbone weight
            (``requires_grad=False``: no optimizer state, no weight decay)
            and the backbone stays in eval mode (no drop-path, no dropout,
            no RoPE coordinate augmentation) across ``train()``.
            Default: False.
        fused_attn (bool): torch's ``scaled_dot_product_attention`` in every
            attention layer that has the switch (timm's ``fused_attn``);
            False computes the attention matrix explicitly. Default: True.
        model_kwargs (dict, optional): More ``timm.create_model`` arguments
            (``embed_dim``, ``depth``, ``num_heads`` for small test models,
            ``init_values``...). Default: None.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=
            PATH)`` loads a local weights file (official DINOv2, DINOv3,
            BEiT-v2, EVA-02 release files or timm ``.safetensors`` /
            ``.pth``) with :func:`~mmseg_segvit.checkpoints.
            load_timm_backbone`; optional keys ``prefix`` (read the keys
            under it: ``'backbone.'`` or ``'backbone.vit.'`` for a
            segmentor checkpoint) and ``src_grid`` (the grid
            of the file's position table when it is not timm's pretraining
            grid). Default: None (timm's initialisation).

    Shapes:
        Input (B, 3, H, W). Output: a tuple with one (B, C, ceil(H / p),
        ceil(W / p)) map per out index.

    Raises:
        ValueError: At build time, for an unknown timm name, a model without
            ``forward_intermediates``, out indices outside the blocks or a
            misplaced argument in ``model_kwargs``; at run time, for an input
            grid a fixed-window model (BEiT) cannot take.
    """

    def __init__(self,
                 model_name: str,
                 img_size: Union[int, Sequence[int]] = (512, 512),
                 out_indices: Optional[Sequence[int]] = None,
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 frozen: bool = False,
                 fused_attn: bool = True,
                 model_kwargs: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        import timm
        model_kwargs = dict(model_kwargs or {})
        reserved = {
            'pretrained', 'img_size', 'drop_path_rate', 'num_classes',
            'dynamic_img_size', 'pretrained_cfg'
        }
        clash = sorted(reserved & set(model_kwargs))
        if clash:
            raise ValueError(
                f'TimmViT model_kwargs must not set {clash}: pretrained '
                'weights come from init_cfg, the others are TimmViT '
                'arguments of their own (img_size, drop_path_rate)')
        if not timm.is_model(model_name):
            close = difflib.get_close_matches(
                model_name.split('.')[0], timm.list_models(), n=6, cutoff=0.6)
            raise ValueError(f'TimmViT: timm {timm.__version__} has no model '
                             f'{model_name!r} (similar names: {close})')
        _model_class(model_name)  # a plain ViT of timm, else ValueError
        self.model_name = model_name
        if '_dinov3' in model_name and _takes(model_name,
                                              'rope_rescale_coords'):
            # the official DINOv3 models rescale their RoPE coordinates by a
            # random factor in [1/2, 2] in training mode (dinov3/hub/
            # backbones.py: pos_embed_rope_rescale_coords=2); timm's
            # definitions leave it out
            model_kwargs.setdefault('rope_rescale_coords', 2.0)
        self.patch_size = _probe_patch_size(model_name, model_kwargs)
        self.img_size = padded_size(img_size, self.patch_size)
        build = dict(
            model_kwargs,
            pretrained=False,
            img_size=self.img_size,
            drop_path_rate=drop_path_rate,
            num_classes=0)
        vit = timm.create_model(
            model_name, **build,
            **({
                'dynamic_img_size': True
            } if _takes(model_name, 'dynamic_img_size') else {}))
        if not hasattr(vit, 'forward_intermediates'):
            raise ValueError(f'TimmViT: timm model {model_name!r} has no '
                             'forward_intermediates')
        depth = len(vit.blocks)
        if out_indices is None:
            out_indices = [depth * k // 3 - 1 for k in (1, 2, 3)]
        if isinstance(out_indices,
                      int) or not all(isinstance(i, int) for i in out_indices):
            raise ValueError(
                f'TimmViT out_indices must be a list of block indices (ints) '
                f'of {model_name} ({depth} blocks), got {out_indices!r}')
        indices = [i + depth if i < 0 else i for i in out_indices]
        if not indices or any(not 0 <= i < depth for i in indices) or \
                sorted(set(indices)) != indices:
            raise ValueError(
                f'TimmViT out_indices must be increasing block indices of '
                f'{model_name} ({depth} blocks, -{depth}..{depth - 1}), got '
                f'{list(out_indices)}')
        self.out_indices = tuple(indices)
        self.num_blocks = depth
        vit.prune_intermediate_layers(
            list(self.out_indices), prune_norm=True, prune_head=True)
        self.vit = vit
        self.embed_dims = vit.embed_dim
        self.dynamic_size = bool(getattr(vit, 'dynamic_img_size', False))
        self.pos_rule = pos_table_rule(model_name)
        if self.pos_rule != TIMM_RULE and getattr(vit, 'pos_embed',
                                                  None) is not None:
            # the official resize at run time (timm's differs)
            vit._pos_embed = types.MethodType(
                lambda m, x, rule=self.pos_rule: _official_pos_embed(
                    m, rule, x),
                vit)
        _official_rope_periods(vit)
        self.fused_attn = bool(fused_attn)
        for module in vit.modules():
            if hasattr(module, 'fused_attn'):
                module.fused_attn = self.fused_attn
        self.with_cp = bool(with_cp)
        if self.with_cp:
            vit.set_grad_checkpointing(True)
        self.frozen = bool(frozen)
        if self.frozen:
            self.vit.requires_grad_(False)
            self.vit.eval()
        self.register_state_dict_post_hook(record_position_grids)
        self.register_load_state_dict_pre_hook(fit_position_tables)
        self.register_load_state_dict_pre_hook(check_loaded_backbone)

    #: What to do when a checkpoint's table has an unknown grid (for
    #: :func:`~.vit_loading.fit_position_tables`).
    unknown_grid_advice = (
        'load it into a model built for the crop it was trained at (set '
        'model.backbone.img_size to it), or take its backbone with its grid: '
        "backbone.init_cfg=dict(type='Pretrained', checkpoint=FILE, "
        "prefix='backbone.', src_grid=(H, W)). Checkpoints saved from this "
        'version record their grid')

    def position_tables(self) -> Dict[str, PositionTable]:
        """The learned position table (``vit.pos_embed``) on the grid of
        ``img_size``, with its prefix rows and the official resize; empty for
        models without one (RoPE only, BEiT).

        A whole-model checkpoint of another crop (``load_from``,
        ``init_model``, ``--resume``) loads with its table resized from the
        grid it recorded (:mod:`.vit_loading`).
        """
        table = getattr(self.vit, 'pos_embed', None)
        if table is None:
            return {}
        grid = self.grid
        prefix = table.shape[1] - grid[0] * grid[1]
        rule = self.pos_rule

        def resize(value: Tensor, src: Grid, dst: Grid) -> Tensor:
            return resize_pos_table(value, src, dst, prefix, rule)

        return {'vit.pos_embed': (grid, prefix, resize)}

    @property
    def grid(self) -> Grid:
        """The patch grid of ``img_size`` (padded)."""
        return (self.img_size[0] // self.patch_size,
                self.img_size[1] // self.patch_size)

    def train(self, mode: bool = True) -> 'TimmViT':
        """``nn.Module.train``; a frozen backbone stays in eval mode."""
        super().train(mode)
        if self.frozen:
            self.vit.eval()
        return self

    def init_weights(self) -> None:
        """Load ``init_cfg``'s file (type ``Pretrained`` or
        ``TimmPretrained``), or keep timm's initialisation."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') in PRETRAINED_TYPES:
            from ...checkpoints.timm_backbone import load_timm_backbone
            unknown = sorted(
                set(cfg) - {'type', 'checkpoint', 'prefix', 'src_grid'})
            if unknown or 'checkpoint' not in cfg:
                problem = (f'unknown keys {unknown}'
                           if unknown else 'no checkpoint')
                raise ValueError(
                    f'TimmViT init_cfg={cfg}: takes checkpoint (a local '
                    f'file) and optionally prefix and src_grid; {problem}')
            load_timm_backbone(self, cfg['checkpoint'], cfg.get('prefix'),
                               cfg.get('src_grid'))
            self._is_init = True
            return
        if cfg is None:
            # timm initialised the model when it was built; its
            # init_weights would draw the weights again and recompute the
            # RoPE periods
            self._is_init = True
            return
        super().init_weights()
        _official_rope_periods(self.vit)

    def check_export(self, dynamic: bool, exporter: str = 'auto') -> str:
        """The ONNX exporter this backbone exports with, or a refusal.

        Called by :func:`mmseg_segvit.deploy.choose_exporter`.

        * BEiT's relative position tables are built for ``img_size``: no
          dynamic export (export at ``img_size``, run slide inference).
        * DINOv2 without registers: the official table resize samples at
          ``scale_factor=(H + 0.1) / h``, which both exporters record as a
          constant of the traced size, so a dynamic file would be wrong at
          other sizes: no dynamic export (export one file per size).
        * A dynamic export that resizes a table by antialiased bicubic
          (DINOv2 with registers, EVA-02) needs the dynamo exporter (the
          TorchScript one has no ``_upsample_bicubic2d_aa``); EVA-02's
          rotary embedding needs it at any size (TorchScript records a
          zero-sized concatenation that onnxruntime rejects).

        Args:
            dynamic (bool): Dynamic batch and image size.
            exporter (str): ``'auto'``, ``'torchscript'`` or ``'dynamo'``.

        Returns:
            str: ``'torchscript'`` or ``'dynamo'``.

        Raises:
            ValueError: The combination is not supported (named).
        """
        vit = self.vit
        table = getattr(vit, 'pos_embed', None) is not None
        if dynamic and not self.dynamic_size:
            raise ValueError(
                f'{self.model_name} runs at img_size={self.img_size} only '
                '(relative position tables of a fixed window): export it '
                'without --dynamic at that size and tile larger images')
        if dynamic and table and self.pos_rule.offset:
            raise ValueError(
                f'no dynamic ONNX export of {self.model_name}: the official '
                'DINOv2 position-table resize (scale factor (H + '
                f'{self.pos_rule.offset}) / h) is traced as a constant of '
                'the example size; export without --dynamic, one file per '
                'image size')
        eva = type(vit).__name__ == 'Eva'
        needs_dynamo = (eva and getattr(vit, 'rope', None) is not None
                        and not hasattr(vit.rope, 'periods')) or (
                            dynamic and table and self.pos_rule.antialias)
        if needs_dynamo:
            if exporter == 'torchscript':
                raise ValueError(
                    f'{self.model_name} needs the dynamo exporter here '
                    '(antialiased bicubic table resize or rotary embedding '
                    'concatenations the TorchScript exporter cannot '
                    "write): use --exporter dynamo or 'auto'")
            return 'dynamo'
        return 'torchscript' if exporter == 'auto' else exporter

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """The chosen blocks' outputs as maps.

        Args:
            inputs (Tensor): Normalised images, (B, 3, H, W).

        Returns:
            tuple[Tensor]: One (B, C, ceil(H / p), ceil(W / p)) map per
            out index, shallow first.
        """
        x = center_pad(inputs, self.patch_size)
        if not self.dynamic_size and tuple(x.shape[-2:]) != self.img_size:
            if any(s < c for s, c in zip(x.shape[-2:], self.img_size)):
                # slide inference crops no window larger than the image
                raise ValueError(
                    f'TimmViT({self.model_name}) takes {self.img_size[0]}x'
                    f'{self.img_size[1]} inputs only (relative position '
                    'tables built for img_size); an image of '
                    f'{tuple(inputs.shape[-2:])} after the test pipeline is '
                    'smaller than that, so even slide inference gives a '
                    'smaller window. Pad test images to the crop: '
                    'model.data_preprocessor.test_cfg=dict(size='
                    f'{self.img_size}) (and the top-level data_preprocessor '
                    'for --tta); the padding is cut off the prediction')
            raise ValueError(
                f'TimmViT({self.model_name}) takes {self.img_size[0]}x'
                f'{self.img_size[1]} inputs only (its relative position '
                f'tables are built for img_size), got {tuple(x.shape[-2:])} '
                f'(padded from {tuple(inputs.shape[-2:])}): use slide '
                'inference with crop_size = img_size '
                "(test_cfg=dict(mode='slide', ...))")
        maps = self.vit.forward_intermediates(
            x,
            indices=list(self.out_indices),
            norm=False,
            output_fmt='NCHW',
            intermediates_only=True)
        return tuple(maps)


def _official_rope_periods(vit: nn.Module) -> None:
    """Keep DINOv3's RoPE periods in the state dict, rounded to bfloat16.

    The official model keeps its periods in its state dict (its released files
    hold them rounded to bfloat16, timm notes); timm recomputes them in float32
    and does not save them. Here they are a saved buffer with the official
    files' values; :func:`load_timm_backbone` loads a file's own.
    """
    rope = getattr(vit, 'rope', None)
    if rope is not None and isinstance(getattr(rope, 'periods', None), Tensor):
        periods = rope.periods.detach().to(torch.bfloat16).float()
        rope.register_buffer('periods', periods, persistent=True)


def _takes(model_name: str, argument: str) -> bool:
    """Whether the timm class behind ``model_name`` takes ``argument``."""
    cls = _model_class(model_name)
    return argument in inspect.signature(cls.__init__).parameters


def _model_class(model_name: str) -> type:
    """The class a timm entry point builds (by its module's name)."""
    import timm
    module = timm.models.model_entrypoint(model_name).__module__
    candidates = {
        'timm.models.vision_transformer': 'VisionTransformer',
        'timm.models.eva': 'Eva',
        'timm.models.beit': 'Beit',
    }
    if module not in candidates:
        raise ValueError(
            f'TimmViT supports timm\'s plain ViTs (vision_transformer, eva, '
            f'beit modules); {model_name!r} is built by {module}')
    mod = __import__(module, fromlist=[candidates[module]])
    return getattr(mod, candidates[module])


def _probe_patch_size(model_name: str, model_kwargs: dict) -> int:
    """The (square) patch size of a timm model, from its arguments."""
    if 'patch_size' in model_kwargs:
        patch = model_kwargs['patch_size']
    else:
        import timm

        # entry points pass their architecture to the class: build it on
        # the meta device to read it without allocating weights
        with torch.device('meta'):
            probe = timm.create_model(
                model_name, pretrained=False, num_classes=0, **model_kwargs)
        patch = probe.patch_embed.patch_size
    if isinstance(patch, (tuple, list)):
        if patch[0] != patch[1]:
            raise ValueError(f'TimmViT needs square patches, {model_name} '
                             f'has {tuple(patch)}')
        patch = patch[0]
    return int(patch)
