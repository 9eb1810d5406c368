"""Class scores and labels from masks resized to the output, band by band.

SegViT's inference resizes every query's mask logits to the output size,
takes their sigmoid and sums them weighted by the class probabilities:
``einsum('bqc,bqhw->bchw', p, sigmoid(resize(m)))``. Done literally, this
materialises (B, Q, H, W) resized masks (150 x 512 x 512 floats = 157 MB
for one ADE20K crop) and streams them through memory three times.

Bilinear resizing is separable, so :func:`resize_in_bands` resizes along
the height once (a small (B, C, H, w) tensor) and then yields the resized
maps one band of output rows at a time, each resized along the width
while it is in cache. Both resizes are ``F.interpolate`` (one axis at a
time). On top of it:

- :func:`combine_resized_masks` gives the (B, K, H, W) scores; the
  resized masks never exist in full.
- :func:`combined_labels` and :func:`resized_labels` give only the
  (B, H, W) arg-max labels (of the combined scores, or of resized
  scores), holding neither the masks nor the scores in full: what a pixel
  accuracy needs.
"""
from typing import Iterator, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'resize_in_bands', 'combine_resized_masks', 'combined_labels',
    'resized_labels'
]

# Bands of about this many floats of resized maps (2 MiB).
BAND_ELEMENTS = 1 << 19


def resize_in_bands(
        maps: Tensor,
        size: Tuple[int, int],
        align_corners: bool = False,
        band_elements: int = BAND_ELEMENTS
) -> Iterator[Tuple[int, int, Tensor]]:
    """Yield ``F.interpolate(maps, size, mode='bilinear')`` by row bands.

    Args:
        maps (Tensor): Maps to resize, shape (B, C, h, w).
        size (tuple[int, int]): Output size (H, W).
        align_corners (bool): As in ``F.interpolate``. Default: False.
        band_elements (int): Elements per band (B * C * rows * W); smaller
            bands use less memory. Default: 2**19.

    Yields:
        tuple: ``(top, bottom, band)`` with ``band`` of shape
        (B, C, bottom - top, W), equal within float rounding to rows
        ``top:bottom`` of the resized maps. A band may share memory with
        ``maps``: do not modify it in place.
    """
    b, c, h, w = maps.shape
    out_h, out_w = int(size[0]), int(size[1])
    # along the height only: (B, C, H, w), small; a resize that keeps an
    # axis's size leaves that axis as it is
    tall = maps if h == out_h else F.interpolate(
        maps, size=(out_h, w), mode='bilinear', align_corners=align_corners)
    rows = max(1, min(out_h, band_elements // max(1, b * c * out_w)))
    for top in range(0, out_h, rows):
        bottom = min(out_h, top + rows)
        band = tall[:, :, top:bottom]
        if w != out_w:  # along the width only
            band = F.interpolate(
                band,
                size=(bottom - top, out_w),
                mode='bilinear',
                align_corners=align_corners)
        yield top, bottom, band


def _combine_bands(cls_prob: Tensor, mask_logits: Tensor,
                   size: Tuple[int, int], align_corners: bool,
                   band_elements: int) -> Iterator[Tuple[int, int, Tensor]]:
    """Yield ``(top, bottom, scores)`` with scores (B, K, rows, W)."""
    b, q = mask_logits.shape[:2]
    if cls_prob.shape[:2] != (b, q):
        raise ValueError(f'cls_prob {tuple(cls_prob.shape)} and mask_logits '
                         f'{tuple(mask_logits.shape)} differ in batch or '
                         'query count')
    dtype = torch.promote_types(cls_prob.dtype, mask_logits.dtype)
    weights = cls_prob.to(dtype).transpose(1, 2)  # (B, K, Q)
    for top, bottom, masks in resize_in_bands(
            mask_logits.to(dtype), size, align_corners, band_elements):
        # (B, K, Q) @ (B, Q, rows * W) -> (B, K, rows * W)
        scores = torch.bmm(weights, masks.sigmoid().flatten(2))
        yield top, bottom, scores.unflatten(2, masks.shape[2:])


def combine_resized_masks(cls_prob: Tensor,
                          mask_logits: Tensor,
                          size: Tuple[int, int],
                          align_corners: bool = False,
                          band_elements: int = BAND_ELEMENTS) -> Tensor:
    """``einsum('bqc,bqhw->bchw', cls_prob, sigmoid(resize(mask_logits)))``.

    The resize is bilinear to ``size`` (as ``F.interpolate`` with
    ``mode='bilinear'``); the result equals the literal computation within
    float rounding.

    Args:
        cls_prob (Tensor): Class probabilities, shape (B, Q, K).
        mask_logits (Tensor): Mask logits, shape (B, Q, h, w).
        size (tuple[int, int]): Output size (H, W).
        align_corners (bool): As in ``F.interpolate``. Default: False.
        band_elements (int): Resized-mask elements per band (B * Q * rows
            * W). Default: 2**19.

    Returns:
        Tensor: Scores of shape (B, K, H, W).
    """
    dtype = torch.promote_types(cls_prob.dtype, mask_logits.dtype)
    out = mask_logits.new_empty(
        mask_logits.shape[0], cls_prob.shape[2], *size, dtype=dtype)
    for top, bottom, scores in _combine_bands(cls_prob, mask_logits, size,
                                              align_corners, band_elements):
        out[:, :, top:bottom] = scores
    return out


def combined_labels(cls_prob: Tensor,
                    mask_logits: Tensor,
                    size: Tuple[int, int],
                    align_corners: bool = False,
                    band_elements: int = BAND_ELEMENTS) -> Tensor:
    """Arg-max over classes of :func:`combine_resized_masks`, (B, H, W).

    Neither the resized masks nor the scores exist in full. Same arguments
    as :func:`combine_resized_masks`.
    """
    out = mask_logits.new_empty(
        mask_logits.shape[0], *size, dtype=torch.long)
    for top, bottom, scores in _combine_bands(cls_prob, mask_logits, size,
                                              align_corners, band_elements):
        out[:, top:bottom] = scores.argmax(1)
    return out


def resized_labels(scores: Tensor,
                   size: Tuple[int, int],
                   align_corners: bool = False,
                   band_elements: int = BAND_ELEMENTS) -> Tensor:
    """Arg-max over channels of bilinearly resized scores, (B, H, W).

    Args:
        scores (Tensor): (B, K, h, w).
        size (tuple[int, int]): Output size (H, W).
        align_corners (bool): As in ``F.interpolate``. Default: False.
        band_elements (int): Resized elements per band. Default: 2**19.
    """
    out = scores.new_empty(scores.shape[0], *size, dtype=torch.long)
    for top, bottom, band in resize_in_bands(scores, size, align_corners,
                                             band_elements):
        out[:, top:bottom] = band.argmax(1)
    return out
