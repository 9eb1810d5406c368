"""What ATMHead accepts: build-time checks of its settings, its inputs.

``ATMHead`` inherits ``BaseDecodeHead``'s constructor, whose arguments
were made for a 1x1-conv classifier trained with a pixel loss. Those that
ATMHead cannot honour are refused when the model is built, with a message
that names the setting and says what to use, instead of being ignored or
failing later inside MMSegmentation or torch:

* ``out_channels`` other than ``num_classes`` and ``threshold``: MMSeg's
  binary mode (one sigmoid channel, a threshold). ATMHead scores every
  class with its own query and predicts the argmax, so binary segmentation
  is ``num_classes=2``.
* ``sampler`` (OHEM pixel sampling of a pixel loss), an
  ``input_transform`` other than ``'multiple_select'`` and
  ``ignore_index=None``; and the head's own counts that are no int >= 1
  (``num_layers``, ``embed_dims``, ``num_heads``, ``use_stages``,
  ``ffn_ratio``), ``in_index`` entries that are no int and ``dropout``
  outside [0, 1) (:func:`check_own_args`).
* a ``loss_decode`` that is not :class:`ATMLoss` (the outputs are
  per-query class logits and masks, which pixel losses cannot take), or an
  ``ATMLoss`` built for another class count or number of outputs
  (:func:`bind_loss`, which also gives the loss the head's values).
* ``channels``, ``dropout_ratio`` and ``init_cfg`` (the width of, the
  dropout before and the initialisation of the 1x1 classifier ATMHead does
  not have) set to a value that would matter (:func:`check_unused_args`).

:func:`stage_tokens` reads one backbone output: a (B, C, H, W) map, a
``(tokens, (H, W))`` pair or MMSeg's ``[map, cls_token]`` pair (a
``VisionTransformer`` with ``output_cls_token=True``, as in MMSeg's DPT
configs), whose class token ATM does not use.

:func:`check_loaded_head` (a load-state pre-hook of ATMHead) refuses a
checkpoint that would leave head weights other than the class tensors (and
the modules listed in ``fresh_modules``) at their random initialisation.
"""
import re
from typing import Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from torch import Tensor

from ...typing_utils import Grid
from ..layers.sizes import traceable_size
from ..load_checks import compare_keys, modules_of

__all__ = [
    'check_inherited_args', 'check_unused_args', 'check_own_args',
    'bind_loss', 'num_supervised_outputs', 'stage_tokens', 'CLASS_MODULES',
    'check_fresh_modules', 'check_loaded_head', 'check_label_sizes'
]

#: The head's modules whose shapes depend on the class count.
CLASS_MODULES = ('q', 'class_embed')
# Head keys of the official SegViT checkpoints (mmseg 0.24 layout).
_OFFICIAL_HEAD_KEY = re.compile(
    r'(?:input_proj|proj_norm|decoder)_\d+\.|atm\.|loss_decode\.criterion\.')
_CONVERT = ('convert the file first with `python tools/'
            'convert_official_segvit.py SRC DST` (or `python -m '
            'mmseg_segvit.tools.convert_official_segvit SRC DST`) and load '
            'DST')


_BINARY_HINT = (
    'ATMHead scores every class with its own query and predicts the '
    'argmax of the class scores, so its output has num_classes channels. '
    'For binary segmentation set num_classes=2 (labels 0 and 1) and leave '
    'out out_channels and threshold')


def check_inherited_args(num_classes: int, kwargs: dict) -> dict:
    """Check the ``BaseDecodeHead`` arguments ATMHead passes on.

    Args:
        num_classes (int): K.
        kwargs (dict): The other ``BaseDecodeHead`` arguments given to
            ``ATMHead``.

    Returns:
        dict: ``kwargs`` with ``out_channels`` (K) and, for one class,
        ``threshold`` set.

    Raises:
        ValueError: For a setting ATMHead cannot honour; the message names
            it and says what to do.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) \
            or num_classes < 1:
        raise ValueError(f'decode_head.num_classes must be an int >= 1, got '
                         f'{num_classes!r}')
    kwargs = dict(kwargs)
    out_channels = kwargs.pop('out_channels', None)
    if out_channels is not None and out_channels != num_classes:
        raise ValueError(
            f'decode_head.out_channels={out_channels} with num_classes='
            f'{num_classes}: {_BINARY_HINT}')
    if kwargs.get('threshold') is not None:
        raise ValueError(
            f"decode_head.threshold={kwargs['threshold']} is not used: "
            f'{_BINARY_HINT}')
    if kwargs.get('sampler') is not None:
        raise ValueError(
            f"decode_head.sampler={kwargs['sampler']} is not supported: "
            'ATMHead does not sample pixels (ATMLoss takes every labelled '
            'pixel, or num_points points per mask); remove '
            'decode_head.sampler')
    ignore_index = kwargs.get('ignore_index', 255)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(
            f'decode_head.ignore_index={ignore_index!r}: ATMHead needs the '
            'int label of unlabelled pixels (MMSeg pads labels with '
            'seg_pad_val=255); set decode_head.ignore_index=255')
    transform = kwargs.pop('input_transform', 'multiple_select')
    if transform != 'multiple_select':
        raise ValueError(
            f'decode_head.input_transform={transform!r} is not supported: '
            'ATMHead reads each input of in_index separately; remove '
            'decode_head.input_transform')
    kwargs['out_channels'] = num_classes
    if num_classes == 1:
        # One output channel is binary segmentation to MMSegmentation
        # (sigmoid > threshold gives label 1); with one class the
        # prediction is that class (label 0), as argmax would give.
        kwargs['threshold'] = 1.0
    return kwargs


def check_unused_args(channels: Optional[int], embed_dims: int,
                      dropout_ratio: float, init_cfg: Optional[dict]) -> None:
    """Refuse values of ``BaseDecodeHead`` arguments that ATMHead has no
    use for, where a value would say something the head does not do.

    ``BaseDecodeHead`` sizes, regularises and initialises a 1x1 classifier
    with them; ATMHead has none (its width is ``embed_dims``, its dropout
    ``dropout``, its initialisation :meth:`ATMHead.init_weights`). A decode
    head dict taken from a stock MMSeg config keeps working: ``channels``
    equal to ``embed_dims``, ``dropout_ratio`` 0 or MMSeg's default 0.1 and
    no ``init_cfg`` are accepted and have no effect.

    Raises:
        ValueError: Naming ``decode_head.channels``, ``dropout_ratio`` or
            ``init_cfg`` and saying what to set instead.
    """
    if channels is not None and channels != embed_dims:
        raise ValueError(
            f'decode_head.channels={channels} but ATMHead\'s width is '
            f'decode_head.embed_dims={embed_dims}: remove channels (or set '
            f'embed_dims={channels} for a head of that width)')
    if dropout_ratio not in (0, 0.1):
        raise ValueError(
            f'decode_head.dropout_ratio={dropout_ratio} is the dropout before '
            "BaseDecodeHead's 1x1 classifier, which ATMHead does not have: "
            'remove it and set decode_head.dropout (the dropout of the '
            'decoder layers, default 0.1)')
    if init_cfg is not None:
        raise ValueError(
            f'decode_head.init_cfg={init_cfg} is not used: ATMHead '
            'initialises itself (truncated-normal linear layers, unit '
            'LayerNorms). Remove it; to start the head from a checkpoint, '
            'load the whole model (load_from or model.init_cfg)')


def _is_count(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) \
        and value >= 1


def check_own_args(num_layers: int,
                   dropout: float,
                   ffn_ratio: int,
                   embed_dims: int = 1,
                   num_heads: int = 1,
                   use_stages: int = 1,
                   in_index: Sequence[int] = ()) -> None:
    """Refuse head settings torch would refuse without naming them (a
    float width such as ``embed_dims=768 / 2``, an FFN of width 0), or
    accept and silently degenerate.

    Raises:
        ValueError: Naming ``decode_head.num_layers``, ``dropout``,
            ``ffn_ratio``, ``embed_dims``, ``num_heads``, ``use_stages`` or
            ``in_index``.
    """
    for name, value in (('num_layers', num_layers), ('embed_dims',
                                                     embed_dims),
                        ('num_heads', num_heads), ('use_stages', use_stages)):
        if not _is_count(value):
            raise ValueError(f'decode_head.{name} must be an int >= 1, got '
                             f'{value!r}')
    if not _is_count(ffn_ratio):
        raise ValueError(f'decode_head.ffn_ratio must be > 0 and an int (the '
                         f'FFN width is ffn_ratio * embed_dims), got '
                         f'{ffn_ratio!r}')
    if not 0 <= dropout < 1:
        raise ValueError(f'decode_head.dropout must be in [0, 1), got '
                         f'{dropout}')
    if any(isinstance(i, bool) or not isinstance(i, int) for i in in_index):
        raise ValueError(f'decode_head.in_index must hold ints (indices of '
                         f'backbone outputs), got {list(in_index)}')


def num_supervised_outputs(use_stages: int, num_layers: int,
                           mask_mode: str) -> int:
    """How many outputs ``ATMHead.forward`` returns (and ATMLoss takes)."""
    return use_stages * num_layers if mask_mode == 'per_layer' else use_stages


def bind_loss(loss: nn.Module, num_classes: int, num_outputs: int) -> None:
    """Check the built ``loss_decode`` of an ATMHead and give it the head's
    class count and number of supervised outputs.

    ``ATMLoss`` learns K (``num_classes``) and L (``dec_layers``) from the
    head, so a config states them once, on the head. A value the config
    does give must agree with the head.

    Args:
        loss (nn.Module): The head's built ``loss_decode``.
        num_classes (int): K, ``decode_head.num_classes``.
        num_outputs (int): L, see :func:`num_supervised_outputs`.

    Raises:
        ValueError: A list of losses, a loss that is not ``ATMLoss``, or an
            ``ATMLoss`` whose ``num_classes`` / ``dec_layers`` disagree with
            the head.
    """
    from ..losses import ATMLoss
    fix = ("set decode_head.loss_decode=dict(type='ATMLoss') (the head "
           'gives it the class count and the number of outputs; its '
           'cls_weight, mask_weight and dice_weight weigh the '
           'cross-entropy, focal and dice terms)')
    if isinstance(loss, nn.ModuleList):
        raise ValueError(
            'decode_head.loss_decode is a list; ATMHead takes one loss '
            f'config, not a list: {fix}')
    if not isinstance(loss, ATMLoss):
        raise ValueError(
            f'decode_head.loss_decode is {type(loss).__name__}, but ATMHead '
            'outputs per-query class logits and masks, not per-pixel '
            f'logits; only ATMLoss (or a subclass) takes them: {fix}')
    if loss.num_classes is not None and loss.num_classes != num_classes:
        raise ValueError(
            f'decode_head.loss_decode.num_classes={loss.num_classes} but '
            f'decode_head.num_classes={num_classes}: leave '
            'loss_decode.num_classes out (the head sets it) and set '
            'decode_head.num_classes to the number of classes of the '
            'dataset')
    if loss.dec_layers is not None and loss.dec_layers != num_outputs:
        raise ValueError(
            f'decode_head.loss_decode.dec_layers={loss.dec_layers} but the '
            f'head gives {num_outputs} supervised outputs (one per stage '
            "with mask_mode='cumulative', one per stage and decoder layer "
            f"with 'per_layer'): set dec_layers={num_outputs} or, better, "
            'leave it out (the head sets it)')
    loss.num_classes = num_classes
    loss.dec_layers = num_outputs


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
        if len(x) != 2 or not isinstance(x[0], Tensor) or not _is_grid(x[1]):
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


def check_label_sizes(batch_data_samples: Sequence) -> None:
    """Refuse a label map whose size is not its (padded) image's.

    The image size is the sample's ``img_shape`` plus the ``padding_size``
    (left, right, top, bottom) that MMSeg's data preprocessor adds to image
    and label alike; a sample without ``img_shape`` is not checked. A label
    of another size would otherwise be stretched onto the image by the
    loss's resize (a silent misalignment) or, in a batch of several sizes,
    fail inside ``torch.stack``.

    Args:
        batch_data_samples (Sequence[SegDataSample]): With ``gt_sem_seg``.

    Raises:
        ValueError: Naming the sample (and its files where known), the two
            sizes and what to check; or a colour (multi-channel) label map,
            which ``PackSegInputs`` packs as (H, W, C) and which would
            otherwise look like a label of another size.
    """
    for i, sample in enumerate(batch_data_samples):
        img_shape = sample.metainfo.get('img_shape')
        if img_shape is None:
            continue
        left, right, top, bottom = sample.metainfo.get('padding_size',
                                                       (0, 0, 0, 0))
        image = (int(img_shape[0]) + top + bottom,
                 int(img_shape[1]) + left + right)
        label = tuple(sample.gt_sem_seg.shape[-2:])
        files = ', '.join(
            str(sample.metainfo[k]) for k in ('img_path', 'seg_map_path')
            if k in sample.metainfo)
        data = sample.gt_sem_seg.data
        if data.dim() == 3 and data.shape[0] != 1:
            # PackSegInputs keeps an (H, W, C) label as a (H, W, C) tensor
            # read as (C=H, H=W, W=C): a colour label map, not a pairing
            # error.
            raise ValueError(
                f'the label map of training sample {i}'
                f'{f" ({files})" if files else ""} has '
                f'{data.shape[-1]} channels (a colour image, read as '
                f'{tuple(data.shape)}); a label map holds one class index '
                'per pixel: save it as a single-channel (grayscale or '
                'palette) PNG of class indices')
        if label != image:
            raise ValueError(
                f'the label map of training sample {i}'
                f'{f" ({files})" if files else ""} is {label[0]}x{label[1]}'
                f' but its image is {image[0]}x{image[1]}: a label map must '
                'have the size of its image. Check that the dataset pairs '
                'each image with its own label file (data_prefix, '
                'seg_map_suffix) and that every pipeline step that resizes '
                'or crops the image comes after LoadAnnotations')


def _in_modules(key: str, modules: Sequence[str]) -> bool:
    return any(key == m or key.startswith(m + '.') for m in modules)


def check_fresh_modules(head: nn.Module,
                        names: Sequence[str]) -> Tuple[str, ...]:
    """Check ``fresh_modules`` against the modules the head has.

    Raises:
        ValueError: A name that is no module of the head.
    """
    if isinstance(names, str):
        names = [names]
    names = tuple(names)
    keys = list(head.state_dict(keep_vars=True))
    unknown = [n for n in names if not any(_in_modules(k, [n]) for k in keys)]
    if unknown:
        raise ValueError(
            f'decode_head.fresh_modules names {unknown}, which the head does '
            f'not have; its modules are {modules_of(keys)}')
    return names


def check_loaded_head(head: nn.Module, state_dict: dict, prefix: str,
                      *args) -> None:
    """Load-state pre-hook of ATMHead: refuse a partial load of the head.

    Missing class tensors (``q``, ``class_embed``: a checkpoint of
    ``drop_class_weights``) and the modules of ``head.fresh_modules`` keep
    their initialisation, which is logged; any other missing, unexpected
    or differently shaped head weight is a ``ValueError`` that names the
    modules and says what to do. Loading the head on its own (empty
    ``prefix``) is not checked.
    """
    if not prefix:
        return
    fresh = CLASS_MODULES + tuple(getattr(head, 'fresh_modules', ()))
    report = compare_keys(head.state_dict(keep_vars=True), state_dict, prefix)
    missing = [k for k in report.missing if not _in_modules(k, fresh)]
    name = prefix[:-1]
    if any(_OFFICIAL_HEAD_KEY.match(k) for k in report.unexpected):
        raise ValueError(
            f'the checkpoint\'s {name} weights are in the layout of the '
            'official SegViT checkpoints (mmseg 0.24: input_proj_1, '
            f'decoder_1, ...), which {name} does not read (loading it would '
            f'leave {modules_of(missing)} at random initialisation): '
            f'{_CONVERT}')
    if missing and not report.present:
        raise ValueError(
            f'the checkpoint has no weights for {name} (ATMHead): loading it '
            f'would leave {modules_of(missing)} at random initialisation. '
            'If the file holds backbone weights, load it with '
            'model.pretrained or backbone.init_cfg; to train these head '
            'modules from scratch on purpose, list them in '
            f'{name}.fresh_modules')
    problems = []
    if missing:
        problems.append(
            f'lacks {len(missing)} weight(s) of {modules_of(missing)} (e.g. '
            f'{prefix}{missing[0]}), which would keep their random '
            'initialisation')
    if report.unexpected:
        problems.append(
            f'has {len(report.unexpected)} weight(s) the head does not '
            f'have, of {modules_of(report.unexpected)} (e.g. '
            f'{prefix}{report.unexpected[0]})')
    if report.mismatched:
        problems.append('has weights of other shapes: ' +
                        '; '.join(report.mismatched[:3]))
    if problems:
        hint = (f'the checkpoint was trained with another {name} '
                '(embed_dims, use_stages, num_layers, use_proj, in_channels);'
                ' use a checkpoint of this configuration')
        if missing and not report.unexpected and not report.mismatched:
            hint = ('to train them from scratch on purpose, list them in '
                    f'{name}.fresh_modules')
        raise ValueError('the checkpoint ' + ' and '.join(problems) +
                         f': {hint}')
    fresh_missing = [k for k in report.missing if k not in missing]
    if fresh_missing:
        print_log(
            f'{name}: {", ".join(modules_of(fresh_missing))} not in the '
            'checkpoint: they start from their initialisation',
            logger='current',
            level=30)
