"""ATMLoss values, log keys and gradient sizes pinned on fixed random inputs.

The numbers were computed once with the loss as released (0.1.0) and are
hard-coded: any change to how the loss is organised must leave every option
(resized or point-sampled masks, every output supervised, images with no
labelled pixel, bf16 autocast, non-default weights) giving the same values
and the same keys in the same order.
"""
from typing import Dict, Tuple

import pytest
import torch

from mmseg_segvit.models.losses import ATMLoss

NUM_CLASSES = 4


def _inputs(num_outputs: int,
            ignore_only: Tuple[int, ...] = (),
            dtype: torch.dtype = torch.float32):
    """Class logits (L, 2, K, K + 1), mask logits (L, 2, K, 6, 7) and labels
    (2, 12, 10) from a fixed seed; images in ``ignore_only`` have no labelled
    pixel."""
    gen = torch.Generator().manual_seed(27)
    cls = torch.randn(
        num_outputs, 2, NUM_CLASSES, NUM_CLASSES + 1, generator=gen)
    masks = 3 * torch.randn(num_outputs, 2, NUM_CLASSES, 6, 7, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (2, 12, 10), generator=gen)
    labels[0, :, NUM_CLASSES - 1:] = torch.where(
        labels[0, :, NUM_CLASSES - 1:] == NUM_CLASSES - 1, 2,
        labels[0, :, NUM_CLASSES - 1:])  # class 3 only in the first columns
    labels[0, :3] = 255
    labels[1, :, :2] = 255
    for b in ignore_only:
        labels[b] = 255
    return (cls.to(dtype).requires_grad_(), masks.to(dtype).requires_grad_(),
            labels)


CASES: Dict[str, dict] = {
    'resized masks':
    dict(outputs=1),
    'every output supervised':
    dict(outputs=3),
    'non-default weights':
    dict(
        outputs=2,
        loss=dict(
            cls_weight=2.0,
            mask_weight=5.0,
            dice_weight=0.5,
            eos_coef=0.2,
            focal_alpha=-1.0,
            focal_gamma=1.5,
            loss_weight=0.7)),
    'point-sampled masks':
    dict(outputs=2, loss=dict(num_points=16, importance_sample_ratio=0.75)),
    'ignore-only batch':
    dict(outputs=2, ignore_only=(0, 1)),
    'one ignore-only image':
    dict(outputs=2, ignore_only=(1, )),
    'bf16 autocast':
    dict(outputs=2, bf16=True),
    'bf16 autocast, point-sampled':
    dict(outputs=2, bf16=True, loss=dict(num_points=16)),
}


def run_case(case: dict):
    """The losses of one case and the summed absolute gradients of the class
    and mask logits under the sum of all losses."""
    dtype = torch.bfloat16 if case.get('bf16') else torch.float32
    cls, masks, labels = _inputs(case['outputs'], case.get('ignore_only', ()),
                                 dtype)
    loss = ATMLoss(**case.get('loss', {}))
    torch.manual_seed(0)  # point sampling draws from the global generator
    with torch.autocast(
            'cpu', dtype=torch.bfloat16, enabled=bool(case.get('bf16'))):
        losses = loss(cls, masks, labels)
    sum(losses.values()).backward()
    return losses, (cls.grad.float().abs().sum().item(),
                    masks.grad.float().abs().sum().item())


# name: (losses in log order, sum |d cls|, sum |d masks|, loss dtype)
PINNED = {
    'resized masks': ({
        'loss_ce': 1.613412,
        'loss_mask': 8.974495,
        'loss_dice': 0.7213843,
    }, 1.478661, 5.096455, 'torch.float32'),
    'every output supervised': ({
        'loss_ce_0': 1.980768,
        'loss_ce_1': 2.038755,
        'loss_ce': 2.148712,
        'loss_mask_0': 8.96025,
        'loss_mask_1': 8.922197,
        'loss_mask': 9.617651,
        'loss_dice_0': 0.7423126,
        'loss_dice_1': 0.7268393,
        'loss_dice': 0.7059404,
    }, 4.909449, 15.35892, 'torch.float32'),
    'non-default weights': ({
        'loss_ce_0': 2.773076,
        'loss_ce': 2.854257,
        'loss_mask_0': 2.802202,
        'loss_mask': 2.908083,
        'loss_dice_0': 0.2562071,
        'loss_dice': 0.2424901,
    }, 4.51813, 2.697236, 'torch.float32'),
    'point-sampled masks': ({
        'loss_ce_0': 1.980768,
        'loss_ce': 2.038755,
        'loss_mask_0': 4.478439,
        'loss_mask': 4.344595,
        'loss_dice_0': 0.6872227,
        'loss_dice': 0.7050221,
    }, 3.227236, 7.70049, 'torch.float32'),
    'ignore-only batch': ({
        'loss_ce_0': 2.329559,
        'loss_ce': 1.712198,
        'loss_mask_0': 0,
        'loss_mask': 0,
        'loss_dice_0': 0,
        'loss_dice': 0,
    }, 3.312948, 0, 'torch.float32'),
    'one ignore-only image': ({
        'loss_ce_0': 1.810128,
        'loss_ce': 2.578927,
        'loss_mask_0': 10.69839,
        'loss_mask': 10.0578,
        'loss_dice_0': 0.7493633,
        'loss_dice': 0.7009985,
    }, 3.306299, 11.44318, 'torch.float32'),
    'bf16 autocast': ({
        'loss_ce_0': 1.981347,
        'loss_ce': 2.038911,
        'loss_mask_0': 9.79175,
        'loss_mask': 10.58175,
        'loss_dice_0': 0.7304688,
        'loss_dice': 0.6914062,
    }, 3.225861, 11.11681, 'torch.float32'),
    'bf16 autocast, point-sampled': ({
        'loss_ce_0': 1.981347,
        'loss_ce': 2.038911,
        'loss_mask_0': 4.44832,
        'loss_mask': 4.374676,
        'loss_dice_0': 0.6792026,
        'loss_dice': 0.7061694,
    }, 3.225861, 7.657915, 'torch.float32'),
}


@pytest.mark.parametrize('name', list(CASES))
def test_loss_values_and_log_keys_are_pinned(name):
    expected, cls_grad, mask_grad, dtype = PINNED[name]
    losses, grads = run_case(CASES[name])
    # same keys in the same order (the order of the training log)
    assert list(losses) == list(expected)
    tol = 2e-2 if CASES[name].get('bf16') else 1e-5
    for key, value in expected.items():
        assert losses[key].dim() == 0
        assert str(losses[key].dtype) == dtype
        assert losses[key].item() == pytest.approx(
            value, rel=tol, abs=1e-6), key
    assert grads[0] == pytest.approx(cls_grad, rel=tol)
    assert grads[1] == pytest.approx(mask_grad, rel=tol)
