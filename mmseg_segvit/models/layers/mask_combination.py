"""Class scores from class probabilities and masks resized to the output.

SegViT's inference resizes every query's mask logits to the output size,
takes their sigmoid and sums them weighted by the class probabilities:
``einsum('bqc,bqhw->bchw', p, sigmoid(resize(m)))``. Done literally, this
materialises (B, Q, H, W) resized masks (150 x 512 x 512 floats = 157 MB
for one ADE20K crop) and streams them through memory three times.

:func:`combine_resized_masks` computes the same scores band by band of
output rows. Bilinear resizing is separable, so the masks are first
resized along the height only (a small (B, Q, H, w) tensor); each band of
rows is then resized along the width, takes its sigmoid and meets the
class probabilities in one batched matrix product while it is in cache.
Both resizes are ``F.interpolate`` (one axis at a time), and the
full-size masks never exist.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['combine_resized_masks']

# Bands of about this many floats of resized masks (2 MiB).
BAND_ELEMENTS = 1 << 19


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
            * W); smaller bands use less memory. Default: 2**19.

    Returns:
        Tensor: Scores of shape (B, K, H, W).
    """
    b, q, h, w = mask_logits.shape
    if cls_prob.shape[:2] != (b, q):
        raise ValueError(f'cls_prob {tuple(cls_prob.shape)} and mask_logits '
                         f'{tuple(mask_logits.shape)} differ in batch or '
                         'query count')
    out_h, out_w = int(size[0]), int(size[1])
    dtype = torch.promote_types(cls_prob.dtype, mask_logits.dtype)
    if (out_h, out_w) == (h, w):  # nothing to resize
        return torch.einsum('bqc,bqhw->bchw', cls_prob.to(dtype),
                            mask_logits.to(dtype).sigmoid())
    # along the height only: (B, Q, H, w), small
    tall = F.interpolate(
        mask_logits.to(dtype),
        size=(out_h, w),
        mode='bilinear',
        align_corners=align_corners)
    weights = cls_prob.to(dtype).transpose(1, 2)  # (B, K, Q)
    out = tall.new_empty(b, weights.shape[1], out_h, out_w)
    band = max(1, min(out_h, band_elements // max(1, b * q * out_w)))
    for top in range(0, out_h, band):
        bottom = min(out_h, top + band)
        # along the width only: (B, Q, rows, W); a resize that keeps an
        # axis's size leaves that axis as it is
        masks = F.interpolate(
            tall[:, :, top:bottom],
            size=(bottom - top, out_w),
            mode='bilinear',
            align_corners=align_corners).sigmoid_()
        # (B, K, Q) @ (B, Q, rows * W) -> (B, K, rows * W)
        scores = torch.bmm(weights, masks.flatten(2))
        out[:, :, top:bottom] = scores.unflatten(2, (bottom - top, out_w))
    return out
