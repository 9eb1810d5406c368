"""Pixel accuracy from predicted labels."""
from typing import Optional

import torch
from torch import Tensor

__all__ = ['label_accuracy']


def label_accuracy(pred_label: Tensor,
                   target: Tensor,
                   ignore_index: Optional[int] = None) -> Tensor:
    """MMSeg's ``accuracy(scores, target, topk=1)``, given the arg-max labels
    instead of the scores.

    A head that can produce its labels without the (B, K, H, W) scores
    (see ``combined_labels``) reports the same number as MMSeg's accuracy
    on the scores, including its small epsilon terms.

    Args:
        pred_label (Tensor): Predicted classes, shape (B, H, W).
        target (Tensor): Labels, shape (B, H, W).
        ignore_index (int, optional): Label not counted.

    Returns:
        Tensor: Percentage of correct pixels, shape (1,).
    """
    if pred_label.shape != target.shape:
        raise ValueError(f'pred_label {tuple(pred_label.shape)} and target '
                         f'{tuple(target.shape)} differ in shape')
    valid = target != ignore_index if ignore_index is not None else \
        torch.ones_like(target, dtype=torch.bool)
    eps = torch.finfo(torch.float32).eps
    # counts as tensors: no host synchronisation, no torch.compile break
    correct = ((pred_label == target) & valid).sum().float().reshape(1)
    total = valid.sum().double()
    return (correct + eps) * (100.0 / (total + eps)).float()
