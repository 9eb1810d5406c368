"""Per-class scores or labels from ATM class logits and mask logits.

SegViT's inference (official ``ATMHead.semantic_inference`` after the mask
resize of ``ATMHead.forward``, zbwxp/SegVit ``decode_heads/atm_head.py``)
resizes every query's mask logits to the output size, takes their sigmoid
and sums them weighted by the class probabilities::

    einsum('bqc,bqhw->bchw', softmax(cls)[..., :K], sigmoid(resize(m)))

:func:`combine` is the one place that computes it, in either order
(``'faithful'``: resize the masks, then combine; ``'fast'``: combine near
mask resolution, then resize the K scores) and as either output
(``'scores'``: (B, K, H, W); ``'labels'``: their (B, H, W) arg-max, what a
pixel accuracy needs).

Bilinear resizing is separable, so a band of output rows resized along the
height, then the width, equals the same rows of the full resize (within
float rounding): :func:`resize_in_bands` resizes the height once on a small
(B, Q, H, w) tensor and each band along the width, and the combination
runs band by band. How many rows a band holds is the memory plan's
(:func:`~.memory_plan.plan_rows`: by device and size); with one band, the
computation is the literal one (one ``F.interpolate``, one sigmoid, one
batched product).
"""
from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...typing_utils import Size
from .amp import autocast_enabled
from .memory_plan import plan_rows
from .sizes import traceable_size

__all__ = [
    'combine', 'class_probabilities', 'resize_in_bands',
    'combine_resized_masks', 'combined_labels', 'resized_labels'
]


def _resized_bands(
        maps: Tensor, size: Size, align_corners: bool,
        rows: Optional[int]) -> Iterator[Tuple[int, int, Tensor, bool]]:
    """:func:`resize_in_bands`, each band with ``is_new``: True where the
    band is a tensor of its own (made by ``F.interpolate``), False where it
    is ``maps`` or a view of a tensor the caller or a later band reads."""
    _, _, in_height, in_width = maps.shape
    out_height, out_width = traceable_size(size)
    rows = out_height if rows is None else max(1, min(out_height, int(rows)))
    if rows >= out_height:
        if (in_height, in_width) == (out_height, out_width):
            yield 0, out_height, maps, False
        else:
            yield 0, out_height, F.interpolate(
                maps,
                size=(out_height, out_width),
                mode='bilinear',
                align_corners=align_corners), True
        return
    # along the height only: (B, C, H, w), small; a resize that keeps an
    # axis's size leaves that axis as it is
    height_resized = maps if in_height == out_height else F.interpolate(
        maps,
        size=(out_height, in_width),
        mode='bilinear',
        align_corners=align_corners)
    for top in range(0, out_height, rows):
        bottom = min(out_height, top + rows)
        band = height_resized[:, :, top:bottom]
        if in_width == out_width:
            yield top, bottom, band, False
        else:  # along the width only
            yield top, bottom, F.interpolate(
                band,
                size=(bottom - top, out_width),
                mode='bilinear',
                align_corners=align_corners), True


def resize_in_bands(
        maps: Tensor,
        size: Size,
        align_corners: bool = False,
        rows: Optional[int] = None) -> Iterator[Tuple[int, int, Tensor]]:
    """Yield ``F.interpolate(maps, size, mode='bilinear')`` by row bands.

    Args:
        maps (Tensor): Maps to resize, shape (B, C, h, w).
        size (tuple[int, int]): Output size (H, W).
        align_corners (bool): As in ``F.interpolate``. Default: False.
        rows (int, optional): Output rows per band; H (one piece, a single
            ``F.interpolate``) if None.

    Yields:
        tuple: ``(top, bottom, band)`` with ``band`` of shape
        (B, C, bottom - top, W), equal within float rounding to rows
        ``top:bottom`` of the resized maps. A band may be ``maps`` itself or
        share memory with it: do not modify it in place.
    """
    for top, bottom, band, _ in _resized_bands(maps, size, align_corners,
                                               rows):
        yield top, bottom, band


def class_probabilities(cls_logits: Tensor) -> Tensor:
    """``softmax(cls_logits)`` without the "no object" column.

    Args:
        cls_logits (Tensor): (B, Q, K + 1).

    Returns:
        Tensor: (B, Q, K).
    """
    return F.softmax(cls_logits, dim=-1)[..., :-1]


def _compute_dtype(cls_prob: Tensor, mask_logits: Tensor) -> torch.dtype:
    """The dtype the resize, sigmoid and product run in.

    Under autocast the masks' own dtype: the official head resizes the (bf16 /
    fp16) masks autocast gives it and its einsum runs in the autocast dtype, so
    upcasting the (B, Q, H, W) masks to the fp32 of the class softmax (an
    autocast fp32 op on CUDA) would only double their memory and traffic.
    Otherwise the promoted dtype of the inputs.
    """
    if autocast_enabled(mask_logits.device):
        return mask_logits.dtype
    return torch.promote_types(cls_prob.dtype, mask_logits.dtype)


def _weighted_sum(weights: Tensor, masks: Tensor,
                  may_overwrite_masks: bool) -> Tensor:
    """(B, K, Q) @ sigmoid((B, Q, r, W)) -> (B, K, r, W).

    ``may_overwrite_masks``: ``masks`` is a temporary nothing else reads,
    so its sigmoid is taken in place (no second (B, Q, r, W) tensor).
    """
    prob = masks.sigmoid_() if may_overwrite_masks else masks.sigmoid()
    # reshape, not unflatten: keeps (r, W) symbolic in ONNX exports
    return torch.bmm(weights,
                     prob.flatten(2)).reshape(weights.shape[0],
                                              weights.shape[1], masks.shape[2],
                                              masks.shape[3])


def _combine_bands(cls_prob: Tensor, mask_logits: Tensor, size: Size,
                   align_corners: bool,
                   rows: Optional[int]) -> Iterator[Tuple[int, int, Tensor]]:
    """Yield ``(top, bottom, scores)`` with scores (B, K, rows, W)."""
    batch, queries = mask_logits.shape[:2]
    if cls_prob.shape[:2] != (batch, queries):
        raise ValueError(f'cls_prob {tuple(cls_prob.shape)} and mask_logits '
                         f'{tuple(mask_logits.shape)} differ in batch or '
                         'query count')
    dtype = _compute_dtype(cls_prob, mask_logits)
    weights = cls_prob.to(dtype).transpose(1, 2)  # (B, K, Q)
    masks = mask_logits.to(dtype)
    # under autograd the resized masks are saved for the backward pass
    in_place_allowed = not (torch.is_grad_enabled() and masks.requires_grad)
    for top, bottom, band, is_new in _resized_bands(masks, size, align_corners,
                                                    rows):
        yield top, bottom, _weighted_sum(weights, band, in_place_allowed
                                         and is_new)


def _rows_per_band(cls_prob: Tensor, mask_logits: Tensor, size: Size,
                   rows: Optional[int], budget: Optional[float]) -> int:
    """``rows`` if given; else H (one piece) where gradients are wanted, else
    :func:`~.memory_plan.plan_rows` for the masks and scores."""
    if rows is not None:
        return rows
    if torch.is_grad_enabled() and (cls_prob.requires_grad
                                    or mask_logits.requires_grad):
        return int(size[0])  # differentiable: the literal one piece
    dtype = _compute_dtype(cls_prob, mask_logits)
    return plan_rows(mask_logits.shape[0], mask_logits.shape[1],
                     cls_prob.shape[2], size, mask_logits.device,
                     dtype.itemsize, budget)


def combine_resized_masks(cls_prob: Tensor,
                          mask_logits: Tensor,
                          size: Size,
                          align_corners: bool = False,
                          rows: Optional[int] = None,
                          budget: Optional[float] = None) -> Tensor:
    """``einsum('bqc,bqhw->bchw', cls_prob, sigmoid(resize(mask_logits)))``.

    The resize is bilinear to ``size`` (as ``F.interpolate`` with
    ``mode='bilinear'``); the result equals the literal computation within
    float rounding. Differentiable (computed in one piece when gradients
    are wanted).

    Args:
        cls_prob (Tensor): Class probabilities, shape (B, Q, K).
        mask_logits (Tensor): Mask logits, shape (B, Q, h, w).
        size (tuple[int, int]): Output size (H, W).
        align_corners (bool): As in ``F.interpolate``. Default: False.
        rows (int, optional): Rows per band; planned by
            :func:`~.memory_plan.plan_rows` if None.
        budget (float, optional): Memory budget of
            :func:`~.memory_plan.plan_rows`.

    Returns:
        Tensor: Scores of shape (B, K, H, W).

    Raises:
        ValueError: If the inputs differ in batch or query count.
    """
    rows = _rows_per_band(cls_prob, mask_logits, size, rows, budget)
    if rows >= size[0]:
        return next(
            _combine_bands(cls_prob, mask_logits, size, align_corners,
                           rows))[2]
    dtype = _compute_dtype(cls_prob, mask_logits)
    out = mask_logits.new_empty(
        mask_logits.shape[0], cls_prob.shape[2], *size, dtype=dtype)
    for top, bottom, scores in _combine_bands(cls_prob, mask_logits, size,
                                              align_corners, rows):
        out[:, :, top:bottom] = scores
    return out


def combined_labels(cls_prob: Tensor,
                    mask_logits: Tensor,
                    size: Size,
                    align_corners: bool = False,
                    rows: Optional[int] = None,
                    budget: Optional[float] = None) -> Tensor:
    """Arg-max over classes of :func:`combine_resized_masks`, (B, H, W).

    With bands, neither the resized masks nor the scores exist in full. Same
    arguments as :func:`combine_resized_masks`.
    """
    rows = _rows_per_band(cls_prob, mask_logits, size, rows, budget)
    bands = _combine_bands(cls_prob, mask_logits, size, align_corners, rows)
    if rows >= size[0]:
        return next(bands)[2].argmax(1)
    out = mask_logits.new_empty(mask_logits.shape[0], *size, dtype=torch.long)
    for top, bottom, scores in bands:
        out[:, top:bottom] = scores.argmax(1)
    return out


def resized_labels(scores: Tensor,
                   size: Size,
                   align_corners: bool = False,
                   rows: Optional[int] = None,
                   budget: Optional[float] = None) -> Tensor:
    """Arg-max over channels of bilinearly resized scores, (B, H, W).

    Args:
        scores (Tensor): (B, K, h, w).
        size (tuple[int, int]): Output size (H, W).
        align_corners (bool): As in ``F.interpolate``. Default: False.
        rows (int, optional): Rows per band; planned if None.
        budget (float, optional): Memory budget of
            :func:`~.memory_plan.plan_rows`.
    """
    if rows is None:
        rows = plan_rows(scores.shape[0], scores.shape[1], 0, size,
                         scores.device, scores.dtype.itemsize, budget)
    bands = resize_in_bands(scores, size, align_corners, rows)
    if rows >= size[0]:
        return next(bands)[2].argmax(1)
    out = scores.new_empty(scores.shape[0], *size, dtype=torch.long)
    for top, bottom, band in bands:
        out[:, top:bottom] = band.argmax(1)
    return out


def _fast_grid(mask_grid: Size, size: Size, scale: int) -> Size:
    """``fast_scale`` times the mask grid, at most ``size``, per axis.

    While a graph is traced (ONNX export) the sizes are traced values and the
    minimum is one of the graph's ops (a Python ``min`` would record the branch
    the example took); under ``torch.export`` / ``torch.compile`` it is
    ``torch.sym_min`` of the symbolic sizes.
    """
    if torch.jit.is_tracing():
        return tuple(
            torch.minimum(torch.as_tensor(n) * scale, torch.as_tensor(m))
            for n, m in zip(mask_grid, size))
    return tuple(torch.sym_min(n * scale, m) for n, m in zip(mask_grid, size))


def combine(cls_logits: Tensor,
            mask_logits: Tensor,
            size: Size,
            *,
            order: str = 'faithful',
            output: str = 'scores',
            fast_scale: int = 4,
            align_corners: bool = False,
            budget: Optional[float] = None) -> Tensor:
    """Per-class scores (or their arg-max) of SegViT's inference at ``size``.

    Args:
        cls_logits (Tensor): Class logits, (B, Q, K + 1); the last class is
            "no object".
        mask_logits (Tensor): Mask logits, (B, Q, h, w).
        size (tuple[int, int]): Output size (H, W).
        order (str): ``'faithful'``: resize the masks to ``size``, then
            combine (the official order). ``'fast'``: resize the masks to
            ``fast_scale`` times their grid (at most ``size``), combine
            there, then resize the (B, K, h', w') scores to ``size``: much
            cheaper; the arg-max agrees on most but not all pixels.
            Default: 'faithful'.
        output (str): ``'scores'``: (B, K, H, W). ``'labels'``: the (B, H, W)
            arg-max over K, computed without holding the full scores where
            memory is short. Default: 'scores'.
        fast_scale (int): See ``order``. Default: 4.
        align_corners (bool): Of every bilinear resize. Default: False.
        budget (float, optional): Bytes the transient tensors may take;
            see :func:`~.memory_plan.plan_rows`. Default: the device's.

    Returns:
        Tensor: (B, K, H, W) scores in the promoted dtype of the inputs
        (under autocast: the masks' dtype, or autocast's where the product
        casts), or (B, H, W) long labels.

    Raises:
        ValueError: On an unknown ``order`` / ``output``, ``fast_scale`` < 1
            or inputs that differ in batch or query count.
    """
    if order not in ('faithful', 'fast'):
        raise ValueError(f"order must be 'faithful' or 'fast', got {order!r}")
    if output not in ('scores', 'labels'):
        raise ValueError(
            f"output must be 'scores' or 'labels', got {output!r}")
    if fast_scale < 1:
        raise ValueError(f'fast_scale must be >= 1, got {fast_scale}')
    size = traceable_size(size)
    cls_prob = class_probabilities(cls_logits)
    if order == 'faithful':
        combination = (
            combine_resized_masks if output == 'scores' else combined_labels)
        return combination(
            cls_prob, mask_logits, size, align_corners, budget=budget)
    coarse_size = _fast_grid(mask_logits.shape[-2:], size, fast_scale)
    coarse_scores = combine_resized_masks(
        cls_prob, mask_logits, coarse_size, align_corners, rows=coarse_size[0])
    if output == 'labels':
        return resized_labels(
            coarse_scores, size, align_corners, budget=budget)
    if tuple(coarse_scores.shape[-2:]) == tuple(size):
        return coarse_scores
    return F.interpolate(
        coarse_scores, size=size, mode='bilinear', align_corners=align_corners)
