"""Point-sampled (memory-lean) mask losses: importance sampling of uncertain
points, sampled logits against resized masks, and the point loss against the
full one."""
import pytest
import torch
import torch.nn.functional as F
from fixtures import data_samples, feature_maps, tiny_head
from mmcv.ops import point_sample
from mmseg.registry import MODELS

from mmseg_segvit.models.losses.point_sampling import (sample_mask_points,
                                                       uncertain_point_coords)


def test_uncertain_points_land_where_logits_are_near_zero():
    logits = torch.full((2, 1, 16, 16), 8.0)
    logits[:, :, :, :4] = 0.0  # the uncertain band: x < 0.25
    coords = uncertain_point_coords(
        logits, 40, oversample_ratio=3, importance_sample_ratio=0.5)
    assert coords.shape == (2, 40, 2)
    assert coords.min() >= 0 and coords.max() <= 1
    # the first half are the most uncertain candidates
    assert (coords[:, :20, 0] < 0.25 + 1 / 16).all()


def test_uncertain_points_validate_arguments():
    logits = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match='num_points'):
        uncertain_point_coords(logits, 0)
    with pytest.raises(ValueError, match='oversample_ratio'):
        uncertain_point_coords(logits, 4, oversample_ratio=0.5)
    with pytest.raises(ValueError, match='importance_sample_ratio'):
        uncertain_point_coords(logits, 4, importance_sample_ratio=2)
    with pytest.raises(ValueError, match='num_points'):
        MODELS.build(dict(type='ATMLoss', num_points=0))


def test_sampled_points_agree_with_resized_masks():
    pred = torch.randn(3, 4, 5, 7, requires_grad=True)
    gt = torch.rand(4, 20, 28) > 0.5
    logits, targets = sample_mask_points(pred, gt, 30)
    assert logits.shape == targets.shape == (3, 4, 30)
    assert targets.min() >= 0 and targets.max() <= 1
    # a logit sampled at a point equals the resized mask at that point:
    # check with points at pixel centres of the label grid
    coords = torch.tensor([[[(0.5 + 3) / 28, (0.5 + 11) / 20]]])
    at_point = point_sample(pred[0, :1][None], coords)
    resized = F.interpolate(
        pred[0, :1][None], size=(20, 28), mode='bilinear',
        align_corners=False)[0, 0, 11, 3]
    torch.testing.assert_close(at_point.flatten()[0], resized)
    logits.sum().backward()
    assert pred.grad.abs().sum() > 0


def test_point_loss_approximates_full_loss_with_uniform_points():
    torch.manual_seed(1)
    faithful = MODELS.build(dict(type='ATMLoss'))
    lean = MODELS.build(
        dict(type='ATMLoss', num_points=20000, importance_sample_ratio=0.0))
    cls = torch.randn(2, 2, 4, 5)
    masks = torch.randn(2, 2, 4, 6, 6)
    labels = torch.randint(0, 4, (2, 3, 3)).repeat_interleave(
        16, 1).repeat_interleave(16, 2)  # 48x48 labels of 16x16 blocks
    full, points = faithful(cls, masks, labels), lean(cls, masks, labels)
    assert full.keys() == points.keys()
    for key in full:
        torch.testing.assert_close(points[key], full[key], rtol=0.05, atol=0)


def test_point_loss_all_ignore_is_finite_and_reaches_masks():
    loss = MODELS.build(dict(type='ATMLoss', num_points=16))
    masks = torch.randn(2, 1, 3, 4, 4, requires_grad=True)
    cls = torch.randn(2, 1, 3, 4, requires_grad=True)
    out = loss(cls, masks, torch.full((1, 8, 8), 255))
    total = sum(out.values())
    assert torch.isfinite(total)
    total.backward()
    assert masks.grad is not None


def test_head_trains_with_point_loss():
    head = tiny_head(
        loss_decode=dict(type='ATMLoss', num_points=50), fast_inference=True)
    labels = torch.randint(0, 5, (2, 16, 24))
    losses = head.loss(
        feature_maps(grids=[(4, 6)] * 3), data_samples(labels), None)
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    assert all(p.grad is not None for p in head.parameters())
