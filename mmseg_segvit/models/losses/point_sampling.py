"""Point-sampled mask losses: uncertainty-guided point selection.

Instead of resizing every predicted mask to the label size, the mask losses can
be evaluated at a fixed number of points per mask (Kirillov et al., PointRend;
Cheng et al., Mask2Former): ``oversample_ratio x num_points`` random
candidates, of which the ``importance_sample_ratio`` most uncertain (logit
closest to 0) are kept, plus fresh random points for the rest. Memory then
depends on the number of points, not on the crop size. Sampling replicates the
border (``padding_mode='border'``), so a sampled logit equals the bilinearly
resized mask at that point, as in the full loss.
"""
from typing import Tuple

import torch
from mmcv.ops import point_sample
from torch import Tensor

__all__ = [
    'check_sampling_ratios', 'uncertain_point_coords', 'sample_mask_points'
]


def _sample(maps: Tensor, coords: Tensor) -> Tensor:
    """Bilinear values of (N, C, h, w) maps at (N, P, 2) points: (N, C, P)."""
    return point_sample(
        maps, coords, align_corners=False, padding_mode='border')


def check_sampling_ratios(oversample_ratio: float,
                          importance_sample_ratio: float,
                          owner: str = '') -> None:
    """Refuse an ``oversample_ratio`` below 1 or an ``importance_sample_ratio``
    outside [0, 1]; the message starts with ``owner`` (e.g. ``'ATMLoss '``)."""
    if oversample_ratio < 1:
        raise ValueError(
            f'{owner}oversample_ratio must be >= 1, got {oversample_ratio}')
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f'{owner}importance_sample_ratio must be in [0, 1], '
                         f'got {importance_sample_ratio}')


@torch.no_grad()
def uncertain_point_coords(logits: Tensor,
                           num_points: int,
                           oversample_ratio: float = 3.0,
                           importance_sample_ratio: float = 0.75) -> Tensor:
    """Pick points where the masks are most uncertain, plus random ones.

    Args:
        logits (Tensor): Mask logits, shape (N, 1, h, w).
        num_points (int): Points per mask, P.
        oversample_ratio (float): Candidates drawn per point (>= 1).
        importance_sample_ratio (float): Share of the P points taken from
            the most uncertain candidates (uncertainty = ``-|logit|``);
            the rest are uniform random. In [0, 1].

    Returns:
        Tensor: Normalised (x, y) coordinates in [0, 1], shape (N, P, 2).
    """
    if num_points < 1:
        raise ValueError(f'num_points must be >= 1, got {num_points}')
    check_sampling_ratios(oversample_ratio, importance_sample_ratio)
    n = logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    candidates = torch.rand(
        n, num_candidates, 2, device=logits.device, dtype=logits.dtype)
    uncertainty = -_sample(logits, candidates).squeeze(1).abs()
    top = uncertainty.topk(num_uncertain, dim=1).indices  # (N, P_u)
    coords = candidates.gather(1, top[..., None].expand(-1, -1, 2))
    num_random = num_points - num_uncertain
    if num_random > 0:
        coords = torch.cat([
            coords,
            torch.rand(
                n, num_random, 2, device=logits.device, dtype=logits.dtype)
        ], 1)
    return coords


def sample_mask_points(
        pred: Tensor,
        gt: Tensor,
        num_points: int,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75) -> Tuple[Tensor, Tensor]:
    """Sample predicted mask logits and binary targets at the same points.

    Each predicted mask gets its own points (chosen on its own logits); the
    target of mask ``m`` is sampled at the points of every output's mask
    ``m``. Coordinates are relative, so the logits (at mask resolution) and
    the targets (at label resolution) need not share a size.

    Args:
        pred (Tensor): Mask logits, shape (L, M, h, w).
        gt (Tensor): Binary targets, shape (M, H, W).
        num_points (int): Points per mask, P.
        oversample_ratio (float): See :func:`uncertain_point_coords`.
        importance_sample_ratio (float): See :func:`uncertain_point_coords`.

    Returns:
        tuple: Point logits (L, M, P) and point targets (L, M, P), the
        targets bilinearly sampled from ``gt`` (fractional on edges).
    """
    num_outputs, num_masks = pred.shape[:2]
    flat = pred.reshape(num_outputs * num_masks, 1, *pred.shape[-2:])
    coords = uncertain_point_coords(flat, num_points, oversample_ratio,
                                    importance_sample_ratio)
    point_logits = _sample(flat, coords).reshape(num_outputs, num_masks,
                                                 num_points)
    # (L, M, P, 2) -> (M, L * P, 2): one grid_sample over the M targets.
    coords = coords.reshape(num_outputs, num_masks, num_points, 2)
    coords = coords.transpose(0, 1).reshape(num_masks, -1, 2)
    with torch.no_grad():
        point_gt = _sample(gt[:, None].to(pred.dtype), coords)
    point_gt = point_gt.reshape(num_masks, num_outputs,
                                num_points).transpose(0, 1)
    return point_logits, point_gt
