"""ATMLoss: the SegViT loss on class logits and attention-to-mask maps."""
from typing import Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine import dist
from mmseg.registry import MODELS
from torch import Tensor

from .point_sampling import check_sampling_ratios, sample_mask_points

__all__ = [
    'ATMLoss', 'ATMTargets', 'MaskSamples', 'sigmoid_focal_loss', 'dice_loss',
    'present_classes'
]


class ATMTargets(NamedTuple):
    """Targets of one batch, from :meth:`ATMLoss.get_targets`.

    Query ``c`` is fixed to class ``c``; the M supervised masks are those
    of the (image, class) pairs where the class appears.

    Attributes:
        classes (Tensor): Target class per query, (B, Q), long; K (no
            object) for classes absent from the image.
        batch_index (Tensor): Image of each supervised mask, (M, ).
        class_index (Tensor): Class (= query) of each supervised mask, (M, ).
        masks (Tensor): Binary target of each supervised mask, (M, H, W).
        num_masks (Tensor): M averaged over processes, at least 1, 0-dim:
            the normaliser of the mask terms.
    """
    classes: Tensor
    batch_index: Tensor
    class_index: Tensor
    masks: Tensor
    num_masks: Tensor


class MaskSamples(NamedTuple):
    """Predicted and target masks where the mask terms compare them, from
    :meth:`ATMLoss.sample_masks`.

    Attributes:
        logits (Tensor): Mask logits, (L, M, P): P pixels of the label or P
            sampled points.
        targets (Tensor): Targets in [0, 1], (M, P), or (L, M, P) when every
            output has its own points.
    """
    logits: Tensor
    targets: Tensor


def sigmoid_focal_loss(logits: Tensor,
                       targets: Tensor,
                       alpha: float = 0.25,
                       gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss averaged over pixels.

    Args:
        logits (Tensor): Mask logits, shape (..., M, P).
        targets (Tensor): Binary targets broadcastable to ``logits``.

    Returns:
        Tensor: Loss per mask, shape (..., M).
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(
        logits, targets.expand_as(logits), reduction='none')
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t)**gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.mean(dim=-1)


def dice_loss(logits: Tensor, targets: Tensor, smooth: float = 1.0) -> Tensor:
    """Dice loss on sigmoid probabilities, ``smooth`` added to both sides of
    the ratio; arguments and shapes as :func:`sigmoid_focal_loss`."""
    prob = logits.sigmoid()
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return 1 - (numerator + smooth) / (denominator + smooth)


def present_classes(seg_label: Tensor, num_classes: int,
                    ignore_index: int) -> Tensor:
    """Which classes appear in each label map.

    Args:
        seg_label (Tensor): Labels, shape (B, H, W).
        num_classes (int): K.
        ignore_index (int): Label value that marks unlabelled pixels.

    Returns:
        Tensor: Bool tensor of shape (B, K).

    Raises:
        ValueError: If a label is neither ``ignore_index`` nor in [0, K).
    """
    valid = seg_label != ignore_index
    bad = valid & ((seg_label < 0) | (seg_label >= num_classes))
    if bad.any():
        value = seg_label[bad][0].item()
        hint = ''
        if value == 255:
            hint = (', or set the seg_pad_val of the data preprocessor (the '
                    'label of padded pixels, default 255) to ignore_index')
        raise ValueError(
            f'label value {value} is outside [0, {num_classes}) and is not '
            f'ignore_index ({ignore_index}): check num_classes or the '
            f'dataset (reduce_zero_label){hint}')
    # long first: K may not fit the labels' dtype (uint8 labels, K > 255)
    index = torch.where(valid, seg_label.long(), num_classes).flatten(1)
    present = seg_label.new_zeros((seg_label.shape[0], num_classes + 1),
                                  dtype=torch.bool)
    present.scatter_(1, index, True)
    return present[:, :num_classes]


def _check_args(oversample_ratio: float, importance_sample_ratio: float,
                eos_coef: float, focal_gamma: float,
                weights: Dict[str, float]) -> None:
    """Refuse ATMLoss settings that would fail or mislead in training."""
    check_sampling_ratios(oversample_ratio, importance_sample_ratio,
                          'ATMLoss ')
    if not 0 <= eos_coef:
        raise ValueError(f'ATMLoss eos_coef (the class weight of "no '
                         f'object") must be >= 0, got {eos_coef}')
    if focal_gamma < 0:
        raise ValueError(f'ATMLoss focal_gamma must be >= 0, got '
                         f'{focal_gamma}')
    for name, value in weights.items():
        if value < 0:
            raise ValueError(f'ATMLoss {name} must be >= 0, got {value}')


def _check_labels(seg_label: Tensor, batch: int) -> None:
    """Labels must be (B, H, W) integer class indices with values (not on the
    meta device)."""
    if seg_label.dim() != 3 or seg_label.shape[0] != batch:
        raise ValueError(
            f'ATMLoss expects labels of shape (B={batch}, H, W), got '
            f'{tuple(seg_label.shape)}. Label maps must be single-channel '
            'images of class indices (one value per pixel, 255 = ignore), '
            'not colour images: convert colour labels to index PNGs')
    if seg_label.is_floating_point() or seg_label.is_complex() \
            or seg_label.dtype == torch.bool:
        raise ValueError(f'ATMLoss expects integer class indices as labels, '
                         f'got {seg_label.dtype}')
    if batch == 0:
        raise ValueError('ATMLoss got an empty batch (B=0): there is '
                         'nothing to average over')
    if seg_label.device.type == 'meta':
        raise ValueError(
            'ATMLoss got labels on the meta device, which have no values: '
            'the loss needs them (which classes are present decides which '
            'masks are supervised). Run the training step on real labels '
            '(e.g. a small batch on the CPU) to count its FLOPs; inference '
            '(predict, encode_decode) runs on meta tensors')


@MODELS.register_module()
class ATMLoss(nn.Module):
    """SegViT's loss for :class:`ATMHead` outputs.

    Query ``i`` is fixed to class ``i`` (no Hungarian matching). For every
    output (the final one and each auxiliary one):

    - ``loss_ce``: cross-entropy over K + 1 classes for every query; queries
      of classes absent from the image target the "no object" class, whose
      weight is ``eos_coef``.
    - ``loss_mask``: sigmoid focal loss on the masks of present classes
      (mean over pixels, summed over masks).
    - ``loss_dice``: dice loss on the same masks.

    Mask terms are divided by the number of present masks averaged over
    processes (at least 1). Masks are resized bilinearly to the label size
    (once for all outputs), or, with ``num_points``, the mask terms are
    evaluated at ``num_points`` points per mask (most of them where the mask
    is uncertain, as in Mask2Former), which keeps training memory
    independent of the crop size.
    Auxiliary outputs are named ``loss_ce_{i}`` etc., ``i`` counting from the
    first output.

    :meth:`get_targets` turns the labels into targets, :meth:`sample_masks`
    picks the supervised masks where they are compared, and each term is a
    method named by its log key that gives one value per output; the table
    :attr:`terms` names each term's weight, and :meth:`forward` weighs and
    names every term of every output from it. A subclass adds a term with
    one method and one entry in ``terms``.
    Source: the official ``losses/atm_loss.py`` (``ATMLoss``) and
    ``losses/criterion.py`` (``SetCriterion``) of zbwxp/SegVit.

    The class count K and the number of supervised outputs L are read from
    the logits (K + 1 class logits, L outputs): the head decides them.

    Args:
        cls_weight (float): Weight of ``loss_ce``. Default: 1.0.
        mask_weight (float): Weight of ``loss_mask``. Default: 20.0.
        dice_weight (float): Weight of ``loss_dice``. Default: 1.0.
        eos_coef (float): Class weight of "no object". Default: 0.1.
        focal_alpha (float): Focal loss alpha. Default: 0.25.
        focal_gamma (float): Focal loss gamma. Default: 2.0.
        loss_weight (float): Multiplies every term. Default: 1.0.
        num_points (int, optional): Memory-lean mode: point-sampled mask
            losses with this many points per mask (Mask2Former uses 12544).
            None (the default, the official loss) resizes the masks.
        oversample_ratio (float): Candidate points per point in the lean
            mode. Default: 3.0.
        importance_sample_ratio (float): Share of the points taken where the
            masks are most uncertain in the lean mode. Default: 0.75.
    """

    #: ``(log key, weight attribute)`` of every term, in log order; the
    #: term is the method named by its log key. A new term is one method
    #: and one entry here.
    terms: Tuple[Tuple[str, str], ...] = (('loss_ce', 'cls_weight'),
                                          ('loss_mask', 'mask_weight'),
                                          ('loss_dice', 'dice_weight'))

    def __init__(self,
                 cls_weight: float = 1.0,
                 mask_weight: float = 20.0,
                 dice_weight: float = 1.0,
                 eos_coef: float = 0.1,
                 focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0,
                 loss_weight: float = 1.0,
                 num_points: Optional[int] = None,
                 oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75,
                 **unknown) -> None:
        super().__init__()
        if unknown:
            raise TypeError(
                f'ATMLoss has no setting {", ".join(sorted(unknown))}: '
                'remove it from decode_head.loss_decode (settings of MMSeg '
                "losses such as loss_name, use_sigmoid or class_weight do "
                'not apply; ATMLoss logs loss_ce, loss_mask and loss_dice '
                'per output and weighs them by cls_weight, mask_weight, '
                'dice_weight and eos_coef)')
        if num_points is not None and (isinstance(num_points, bool)
                                       or not isinstance(num_points, int)
                                       or num_points < 1):
            raise ValueError(f'ATMLoss num_points must be None or an int >= '
                             f'1 (points per mask), got {num_points!r}')
        _check_args(
            oversample_ratio, importance_sample_ratio, eos_coef, focal_gamma,
            dict(
                cls_weight=cls_weight,
                mask_weight=mask_weight,
                dice_weight=dice_weight,
                loss_weight=loss_weight))
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.cls_weight = cls_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.eos_coef = eos_coef
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.loss_weight = loss_weight

    def _check(self, cls_logits: Tensor, mask_logits: Tensor) -> int:
        if cls_logits.dim() != 4 or mask_logits.dim() != 5:
            raise ValueError(
                'ATMLoss expects class logits (L, B, Q, K + 1) and mask '
                f'logits (L, B, Q, h, w), got {tuple(cls_logits.shape)} '
                f'and {tuple(mask_logits.shape)}')
        _, _, num_queries, k1 = cls_logits.shape
        num_classes = k1 - 1
        if num_queries != num_classes:
            raise ValueError(
                f'ATMLoss assigns query i to class i, so it needs one query '
                f'per class: got {num_queries} queries and {num_classes} '
                'classes')
        if mask_logits.shape[:3] != cls_logits.shape[:3]:
            raise ValueError('class logits and mask logits disagree: '
                             f'{tuple(cls_logits.shape)} vs '
                             f'{tuple(mask_logits.shape)}')
        return num_classes

    @staticmethod
    def _average_num_masks(num_masks: int, device: torch.device) -> Tensor:
        """Number of masks averaged over processes, at least 1, as a 0-dim
        tensor (no host synchronisation)."""
        total = torch.tensor(float(num_masks), device=device)
        dist.all_reduce(total, op='sum')
        return (total / dist.get_world_size()).clamp_(min=1.0)

    def get_targets(self, seg_label: Tensor, num_classes: int,
                    ignore_index: int, device: torch.device) -> ATMTargets:
        """What each query is supervised with, from the label maps.

        Query ``c`` of image ``b`` targets class ``c`` and the binary mask
        ``seg_label[b] == c`` when class ``c`` appears in the image, else
        the "no object" class (index K) and no mask.

        Args:
            seg_label (Tensor): Labels, shape (B, H, W), integer.
            num_classes (int): K.
            ignore_index (int): Unlabelled pixels.
            device (torch.device): Device of the logits.

        Returns:
            ATMTargets: The targets (shapes in :class:`ATMTargets`).
        """
        present = present_classes(seg_label, num_classes, ignore_index)
        batch_index, class_index = present.nonzero(as_tuple=True)
        classes = torch.full(
            present.shape, num_classes, dtype=torch.long, device=device)
        classes[batch_index, class_index] = class_index
        masks = seg_label[batch_index] == class_index[:, None, None]
        return ATMTargets(classes, batch_index, class_index, masks,
                          self._average_num_masks(len(batch_index), device))

    def sample_masks(self, mask_logits: Tensor,
                     targets: ATMTargets) -> MaskSamples:
        """The supervised masks where the mask terms compare them: every pixel
        of the label (masks resized bilinearly, once for all outputs) or, with
        ``num_points``, the same points of prediction and target.

        Args:
            mask_logits (Tensor): Mask logits per output, (L, B, Q, h, w).
            targets (ATMTargets): From :meth:`get_targets`.

        Returns:
            MaskSamples: Logits (L, M, P) and targets (M, P) or (L, M, P);
            with no mask supervised (M = 0) empty, still attached to
            ``mask_logits`` (zero terms, gradients reach every parameter:
            DDP needs them).
        """
        logits = mask_logits[:, targets.batch_index,
                             targets.class_index]  # (L, M, h, w)
        gt = targets.masks  # (M, H, W)
        if len(gt) == 0:
            logits = logits.flatten(2)
            return MaskSamples(logits, logits.new_zeros(logits.shape[1:]))
        if self.num_points is not None:
            return MaskSamples(*sample_mask_points(
                logits, gt, self.num_points, self.oversample_ratio,
                self.importance_sample_ratio))
        if logits.shape[-2:] != gt.shape[-2:]:
            logits = F.interpolate(
                logits,
                size=gt.shape[-2:],
                mode='bilinear',
                align_corners=False)
        logits = logits.flatten(2)  # (L, M, H*W)
        return MaskSamples(logits, gt.flatten(1).to(logits.dtype))

    # The terms: one method each, named by its log key; each gives one value
    # per output, (L, ), before weighting.

    def loss_ce(self, cls_logits: Tensor, masks: MaskSamples,
                targets: ATMTargets) -> Tensor:
        """Cross-entropy over K + 1 classes of every query, "no object"
        weighted by ``eos_coef``: the weighted mean of each output (the same
        targets, hence the same denominator, for every output)."""
        num_outputs, _, _, num_labels = cls_logits.shape
        class_weight = cls_logits.new_ones(num_labels)
        class_weight[-1] = self.eos_coef
        # all outputs in one call
        weighted_nll = F.cross_entropy(
            cls_logits.flatten(0, 2),
            targets.classes.expand(num_outputs, -1, -1).flatten(),
            class_weight,
            reduction='none')  # (L * B * Q, )
        return weighted_nll.view(
            num_outputs, -1).sum(1) / class_weight[targets.classes].sum()

    def loss_mask(self, cls_logits: Tensor, masks: MaskSamples,
                  targets: ATMTargets) -> Tensor:
        """Sigmoid focal loss of the supervised masks (mean over points, sum
        over masks) per average number of masks."""
        focal = sigmoid_focal_loss(masks.logits, masks.targets,
                                   self.focal_alpha, self.focal_gamma)
        return focal.sum(-1) / targets.num_masks

    def loss_dice(self, cls_logits: Tensor, masks: MaskSamples,
                  targets: ATMTargets) -> Tensor:
        """Dice loss of the supervised masks (summed over masks) per average
        number of masks."""
        return dice_loss(masks.logits, masks.targets).sum(-1) / \
            targets.num_masks

    def forward(self,
                cls_logits: Tensor,
                mask_logits: Tensor,
                seg_label: Tensor,
                ignore_index: int = 255) -> Dict[str, Tensor]:
        """Compute the losses.

        Args:
            cls_logits (Tensor): Class logits per output, (L, B, Q, K + 1).
            mask_logits (Tensor): Mask logits per output, (L, B, Q, h, w).
            seg_label (Tensor): Labels, shape (B, H, W), integer.
            ignore_index (int): Unlabelled pixels. Default: 255.

        Returns:
            dict[str, Tensor]: Weighted loss terms, by term then by output:
            ``loss_ce_0`` ... ``loss_ce`` (the last output), ``loss_mask_0``
            ...

        Raises:
            ValueError: Logits of other shapes than the head's, labels that
                are not (B, H, W) integers (or are on the meta device), or
                label values outside ``[0, K)`` other than
                ``ignore_index``.
        """
        num_classes = self._check(cls_logits, mask_logits)
        num_outputs = cls_logits.shape[0]
        _check_labels(seg_label, cls_logits.shape[1])
        targets = self.get_targets(seg_label, num_classes, ignore_index,
                                   cls_logits.device)
        masks = self.sample_masks(mask_logits, targets)
        # every term of every output weighted in one product: (T, L)
        values = torch.stack([
            getattr(self, name)(cls_logits, masks, targets)
            for name, _ in self.terms
        ])
        weights = torch.tensor(
            [getattr(self, weight) for _, weight in self.terms],
            dtype=values.dtype) * self.loss_weight
        values = values * weights.to(values.device, non_blocking=True)[:, None]
        # one unbind (its backward is one stack), not T * L selections
        flat = iter(values.flatten().unbind(0))
        return {
            name if i == num_outputs - 1 else f'{name}_{i}': next(flat)
            for name, _ in self.terms for i in range(num_outputs)
        }
