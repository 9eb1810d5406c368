"""Class scores from class probabilities and masks resized to the output.

SegViT's inference resizes every query's mask logits to the output size,
takes their sigmoid and sums them weighted by the class probabilities:
``einsum('bqc,bqhw->bchw', p, sigmoid(resize(m)))``. Done literally, this
materialises (B, Q, H, W) resized masks (150 x 512 x 512 floats = 157 MB
for one ADE20K crop) and streams them through memory three times.

:func:`combine_resized_masks` computes the same scores band by band of
output rows: bilinear resizing is separable, so a band of resized masks is
``R_h[band] @ m @ R_w^T`` with the 1-D interpolation matrices that
``F.interpolate`` itself produces (see :func:`interpolation_matrix`); the
sigmoid and the class sum then run on a band that stays in cache. Every
step is a matrix product, and the full-size masks never exist.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['interpolation_matrix', 'combine_resized_masks']

# Bands of about this many floats of resized masks (8 MiB).
BAND_ELEMENTS = 1 << 21


def interpolation_matrix(size_in: int, size_out: int, align_corners: bool,
                         dtype: torch.dtype,
                         device: torch.device) -> Tensor:
    """The (size_out, size_in) matrix of 1-D linear interpolation.

    Row ``i`` holds the weights ``F.interpolate(..., mode='linear')`` gives
    the inputs of output ``i``; it is obtained by interpolating the
    identity, so it follows torch's own coordinate rules.
    """
    eye = torch.eye(size_in, dtype=torch.float32, device=device)
    weights = F.interpolate(
        eye[None], size=size_out, mode='linear',
        align_corners=align_corners)[0]  # (size_in, size_out)
    return weights.t().to(dtype).contiguous()


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
            * W); smaller bands use less memory. Default: 2**21.

    Returns:
        Tensor: Scores of shape (B, K, H, W).
    """
    b, q, h, w = mask_logits.shape
    if cls_prob.shape[:2] != (b, q):
        raise ValueError(f'cls_prob {tuple(cls_prob.shape)} and mask_logits '
                         f'{tuple(mask_logits.shape)} differ in batch or '
                         'query count')
    out_h, out_w = int(size[0]), int(size[1])
    if (out_h, out_w) == (h, w):  # nothing to resize
        return torch.einsum('bqc,bqhw->bchw', cls_prob, mask_logits.sigmoid())
    dtype = torch.promote_types(cls_prob.dtype, mask_logits.dtype)
    device = mask_logits.device
    rows = interpolation_matrix(h, out_h, align_corners, dtype, device)
    cols = interpolation_matrix(w, out_w, align_corners, dtype, device)
    # resize along the width once, rows first: (h, B, Q, W), small
    wide = torch.matmul(mask_logits.to(dtype).permute(2, 0, 1, 3), cols.t())
    wide = wide.reshape(h, b * q * out_w)
    weights = cls_prob.to(dtype).transpose(1, 2)  # (B, K, Q)
    k = weights.shape[1]
    out = torch.empty(b, k, out_h, out_w, dtype=dtype, device=device)
    band = max(1, min(out_h, band_elements // max(1, b * q * out_w)))
    for top in range(0, out_h, band):
        bottom = min(out_h, top + band)
        # (rows, h) @ (h, B * Q * W): one matrix product per band
        masks = torch.mm(rows[top:bottom], wide).sigmoid_()
        masks = masks.view(bottom - top, b, q, out_w)
        for i in range(b):
            # (rows, K, Q) @ (rows, Q, W) -> (rows, K, W); an explicit bmm
            # so that FLOP counters see every row
            scores = torch.bmm(weights[i].expand(bottom - top, -1, -1),
                               masks[:, i])
            out[i, :, top:bottom] = scores.transpose(0, 1)
    return out
