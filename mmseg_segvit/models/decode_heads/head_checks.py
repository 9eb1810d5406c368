"""What ATMHead accepts: the settings it refuses, the labels it checks.

``ATMHead`` inherits ``BaseDecodeHead``'s constructor, whose arguments
were made for a 1x1-conv classifier trained with a pixel loss. Those that
ATMHead would ignore, or that would fail later without naming the setting,
are refused when the model is built with a message that names the setting
and says what to use:

* ``out_channels`` other than ``num_classes`` and ``threshold``: MMSeg's
  binary mode (one sigmoid channel, a threshold). ATMHead scores every
  class with its own query and predicts the argmax, so binary segmentation
  is ``num_classes=2``.
* ``sampler`` (OHEM pixel sampling of a pixel loss), an
  ``input_transform`` other than ``'multiple_select'`` and
  ``ignore_index=None``; and the head's own counts that are no int >= 1
  (``num_layers``, ``embed_dims``, ``num_heads``, ``use_stages``,
  ``ffn_ratio``) and ``dropout`` outside [0, 1) (:func:`check_own_args`).
* a ``loss_decode`` that is not :class:`ATMLoss` (:func:`check_loss`).
* ``channels``, ``dropout_ratio`` and ``init_cfg`` (the width of, the
  dropout before and the initialisation of the 1x1 classifier ATMHead does
  not have) set to a value that would matter (:func:`check_unused_args`).

:func:`check_label_sizes` refuses, when the batch arrives, label maps that
the loss would otherwise stretch onto their images. Checkpoint loads are
checked by :mod:`mmseg_segvit.models.load_checks`.
"""
from typing import Optional, Sequence

import torch.nn as nn

from ..losses import ATMLoss

__all__ = [
    'check_inherited_args', 'check_unused_args', 'check_own_args',
    'check_loss', 'check_label_sizes'
]

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
    """Refuse values of ``BaseDecodeHead`` arguments that ATMHead has no use
    for, where a value would say something the head does not do.

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
                   use_stages: int = 1) -> None:
    """Refuse head settings torch would refuse without naming them (a float
    width such as ``embed_dims=768 / 2``, an FFN of width 0), or accept and
    silently degenerate.

    Raises:
        ValueError: Naming ``decode_head.num_layers``, ``dropout``,
            ``ffn_ratio``, ``embed_dims``, ``num_heads`` or ``use_stages``.
    """
    for name, value in (('num_layers', num_layers), ('embed_dims', embed_dims),
                        ('num_heads', num_heads), ('use_stages', use_stages)):
        if not _is_count(value):
            raise ValueError(f'decode_head.{name} must be an int >= 1, got '
                             f'{value!r}')
    if not _is_count(ffn_ratio):
        raise ValueError(f'decode_head.ffn_ratio must be > 0 and an int (the '
                         f'FFN width is ffn_ratio * embed_dims), got '
                         f'{ffn_ratio!r}')
    if not _is_probability(dropout):
        raise ValueError(f'decode_head.dropout must be a number in [0, 1), '
                         f'got {dropout!r}')


def _is_probability(value) -> bool:
    """A real number in [0, 1) (not a bool), as a dropout ratio."""
    return isinstance(
        value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1


def check_loss(loss: nn.Module) -> None:
    """Refuse a ``loss_decode`` that cannot take ATMHead's outputs.

    Raises:
        ValueError: A loss that is not :class:`ATMLoss` (or a list of
            losses): the head outputs per-query class logits and masks, not
            per-pixel logits.
    """
    if not isinstance(loss, ATMLoss):
        what = ('a list'
                if isinstance(loss, nn.ModuleList) else type(loss).__name__)
        raise ValueError(
            f'decode_head.loss_decode is {what}, but ATMHead outputs '
            'per-query class logits and masks, not per-pixel logits; only '
            "ATMLoss (or a subclass) takes them: set decode_head."
            "loss_decode=dict(type='ATMLoss') (its cls_weight, mask_weight "
            'and dice_weight weigh the cross-entropy, focal and dice '
            'terms)')


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
