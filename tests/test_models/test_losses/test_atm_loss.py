import math

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from mmseg_segvit.models.losses import ATMLoss
from mmseg_segvit.models.losses.atm_loss import (dice_loss, present_classes,
                                                 sigmoid_focal_loss)


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _focal(logit, t, alpha=0.25, gamma=2.0):
    p = _sigmoid(logit)
    ce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
    p_t = p * t + (1 - p) * (1 - t)
    a_t = alpha * t + (1 - alpha) * (1 - t)
    return a_t * ce * (1 - p_t)**gamma


def _dice(logits, targets):
    p = [_sigmoid(x) for x in logits]
    num = 2 * sum(a * b for a, b in zip(p, targets))
    return 1 - (num + 1) / (sum(p) + sum(targets) + 1)


def _ce(logits, target, weights):
    z = [math.exp(v) for v in logits]
    return -math.log(z[target] / sum(z)), weights[target]


def test_known_2x2_case_by_hand():
    # 2 classes, one image: class 0 top row, class 1 bottom-left, ignore.
    label = torch.tensor([[[0, 0], [1, 255]]])
    masks = torch.tensor([[[[[2.0, -1.0], [0.5, 1.0]],
                            [[-2.0, 0.0], [3.0, -1.5]]]]])
    cls = torch.tensor([[[[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]]])
    losses = ATMLoss()(cls, masks, label, ignore_index=255)

    weights = [1.0, 1.0, 0.1]
    (l0, w0), (l1, w1) = _ce([1.0, 0.0, -1.0], 0,
                             weights), _ce([0.5, 2.0, 0.0], 1, weights)
    ce = (w0 * l0 + w1 * l1) / (w0 + w1)
    t0, t1 = [1, 1, 0, 0], [0, 0, 1, 0]  # ignored pixels count as negatives
    m0, m1 = [2.0, -1.0, 0.5, 1.0], [-2.0, 0.0, 3.0, -1.5]
    focal = (sum(_focal(x, t) for x, t in zip(m0, t0)) / 4 +
             sum(_focal(x, t) for x, t in zip(m1, t1)) / 4) / 2
    dice = (_dice(m0, t0) + _dice(m1, t1)) / 2
    assert losses['loss_ce'].item() == pytest.approx(ce, rel=1e-5)
    assert losses['loss_mask'].item() == pytest.approx(20 * focal, rel=1e-5)
    assert losses['loss_dice'].item() == pytest.approx(dice, rel=1e-5)


def test_perfect_prediction_gives_near_zero_loss():
    label = torch.zeros(2, 8, 8, dtype=torch.long)
    label[:, 4:] = 2
    label[1, :, :2] = 255
    onehot = torch.stack([label == c for c in range(3)], 1).float()
    masks = (onehot * 40 - 20)[None]  # (1, B, Q, H, W)
    present = torch.stack([(label == c).flatten(1).any(1) for c in range(3)],
                          1)
    cls = torch.full((1, 2, 3, 4), -20.0)
    for b in range(2):
        for q in range(3):
            cls[0, b, q, q if present[b, q] else 3] = 20.0
    losses = ATMLoss()(cls, masks, label)
    assert losses['loss_ce'] < 1e-6
    assert losses['loss_mask'] < 1e-6
    assert losses['loss_dice'] < 1e-6


def test_no_object_class_is_weighted_by_eos_coef():
    label = torch.zeros(1, 4, 4, dtype=torch.long)  # class 1 absent
    cls = torch.randn(1, 1, 2, 3)
    masks = torch.randn(1, 1, 2, 4, 4)
    loss = ATMLoss(eos_coef=0.1)(cls, masks, label)['loss_ce']
    logp = cls[0, 0].log_softmax(-1)
    expected = -(logp[0, 0] + 0.1 * logp[1, 2]) / 1.1
    torch.testing.assert_close(loss, expected)


def test_all_ignore_label_is_finite_and_keeps_gradients():
    label = torch.full((2, 4, 4), 255)
    cls = torch.randn(3, 2, 4, 5, requires_grad=True)
    masks = torch.randn(3, 2, 4, 4, 4, requires_grad=True)
    losses = ATMLoss()(cls, masks, label)
    total = sum(losses.values())
    assert torch.isfinite(total)
    assert losses['loss_mask'] == 0 and losses['loss_dice'] == 0
    # every query targets "no object"
    expected = -cls[-1].log_softmax(-1)[..., -1].mean()
    torch.testing.assert_close(losses['loss_ce'], expected)
    total.backward()
    assert masks.grad is not None and cls.grad is not None


def test_auxiliary_outputs_are_named_per_output():
    label = torch.randint(0, 3, (1, 6, 6))
    losses = ATMLoss()(torch.randn(3, 1, 3, 4), torch.randn(3, 1, 3, 3, 3),
                       label)
    assert set(losses) == {
        f'{n}{s}'
        for n in ('loss_ce', 'loss_mask', 'loss_dice')
        for s in ('', '_0', '_1')
    }


def test_masks_are_resized_to_the_label():
    label = torch.randint(0, 3, (2, 8, 8))
    cls, masks = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4, 4)
    small = ATMLoss()(cls, masks, label)
    big = torch.nn.functional.interpolate(
        masks[0], size=(8, 8), mode='bilinear', align_corners=False)[None]
    full = ATMLoss()(cls, big, label)
    for key in small:
        torch.testing.assert_close(small[key], full[key])


def test_bad_inputs_raise_clear_errors():
    cls, masks = torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 2, 2)
    with pytest.raises(ValueError, match='outside'):
        ATMLoss()(cls, masks, torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match='one query per class'):
        ATMLoss()(torch.randn(1, 1, 2, 4), torch.randn(1, 1, 2, 2, 2),
                  torch.zeros(1, 2, 2).long())


def test_present_classes():
    label = torch.tensor([[[0, 2], [255, 2]], [[1, 1], [1, 1]]])
    present = present_classes(label, 3, 255)
    assert present.tolist() == [[True, False, True], [False, True, False]]


def test_present_classes_matches_a_loop():
    labels = torch.randint(0, 7, (3, 9, 5))
    labels[labels == 6] = 255
    labels[2] = 255
    present = present_classes(labels, 6, ignore_index=255)
    for b in range(3):
        for c in range(6):
            assert present[b, c].item() == bool((labels[b] == c).any())


def _loop_reference(cls_logits, mask_logits, labels, eos_coef=0.1):
    """The ATM loss written with loops over outputs, images and classes."""
    num_outputs, batch, k = cls_logits.shape[:3]
    out = []
    pairs = [(b, c) for b in range(batch) for c in range(k)
             if (labels[b] == c).any()]
    weight = torch.ones(k + 1)
    weight[-1] = eos_coef
    for i in range(num_outputs):
        target = torch.full((batch, k), k)
        for b, c in pairs:
            target[b, c] = c
        ce = F.cross_entropy(cls_logits[i].transpose(1, 2), target, weight)
        focal = dice = 0
        for b, c in pairs:
            pred = F.interpolate(
                mask_logits[i, b, c][None, None],
                size=labels.shape[-2:],
                mode='bilinear',
                align_corners=False).flatten()
            gt = (labels[b] == c).flatten().float()
            focal = focal + sigmoid_focal_loss(pred, gt)
            dice = dice + dice_loss(pred, gt)
        n = max(len(pairs), 1)
        out.append((ce, 20 * focal / n, dice / n))
    return out


def test_vectorised_loss_matches_loop_reference():
    loss = MODELS.build(dict(type='ATMLoss'))
    cls = torch.randn(2, 2, 4, 5)
    masks = torch.randn(2, 2, 4, 3, 5)
    labels = torch.randint(0, 3, (2, 12, 20))
    labels[0, :4] = 255
    got = loss(cls, masks, labels)
    ref = _loop_reference(cls, masks, labels)
    for i, suffix in enumerate(['_0', '']):
        for j, name in enumerate(['loss_ce', 'loss_mask', 'loss_dice']):
            torch.testing.assert_close(got[name + suffix], ref[i][j])


@pytest.mark.parametrize('kwargs, match', [
    (dict(oversample_ratio=0.5), 'oversample_ratio must be >= 1'),
    (dict(importance_sample_ratio=1.5), r'importance_sample_ratio .*\[0, 1\]'),
    (dict(eos_coef=-0.1), 'eos_coef'),
    (dict(focal_gamma=-1.0), 'focal_gamma must be >= 0'),
    (dict(mask_weight=-20.0), 'mask_weight must be >= 0'),
])
def test_atm_loss_settings_are_checked_at_build(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(dict(type='ATMLoss', **kwargs))


def test_atm_loss_refuses_labels_that_are_not_class_index_maps():
    loss = MODELS.build(dict(type='ATMLoss'))
    cls = torch.randn(1, 2, 3, 4)
    masks = torch.randn(1, 2, 3, 4, 4)
    colour = torch.randint(0, 3, (2, 8, 8, 3))  # an RGB label image
    with pytest.raises(
            ValueError,
            match=r'labels of shape \(B=2, H, W\), got \(2, 8, 8, 3\).*'
            'single-channel'):
        loss(cls, masks, colour)
    with pytest.raises(ValueError, match=r'\(B=2, H, W\), got \(3, 8, 8\)'):
        loss(cls, masks, torch.zeros(3, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match='integer class indices'):
        loss(cls, masks, torch.zeros(2, 8, 8))
    assert torch.isfinite(
        sum(loss(cls, masks, torch.zeros(2, 8, 8, dtype=torch.long)).values()))


def test_class_loss_of_every_output_is_its_own_weighted_cross_entropy():
    """All outputs in one call equal one F.cross_entropy per output (the
    official loss loops over them), values and gradients."""
    torch.manual_seed(0)
    cls = torch.randn(3, 2, 4, 5, requires_grad=True)
    masks = torch.randn(3, 2, 4, 4, 4)
    label = torch.tensor([[[0, 0, 1, 1]] * 4, [[2, 2, 255, 1]] * 4])
    losses = ATMLoss(eos_coef=0.1)(cls, masks, label)
    # present classes target themselves, the rest "no object" (4)
    target = torch.tensor([[0, 1, 4, 4], [4, 1, 2, 4]])
    weight = torch.tensor([1., 1., 1., 1., 0.1])
    expected = [
        F.cross_entropy(cls[i].transpose(1, 2), target, weight)
        for i in range(3)
    ]
    got = [losses['loss_ce_0'], losses['loss_ce_1'], losses['loss_ce']]
    torch.testing.assert_close(torch.stack(got), torch.stack(expected))
    (grad, ) = torch.autograd.grad(sum(got), cls)
    (ref, ) = torch.autograd.grad(sum(expected), cls)
    torch.testing.assert_close(grad, ref)


@pytest.mark.parametrize('settings, named', [
    (dict(loss_name='loss_atm'), 'loss_name'),
    (dict(use_sigmoid=False,
          avg_non_ignore=True), 'avg_non_ignore, use_sigmoid'),
])
def test_settings_of_other_losses_are_named(settings, named):
    with pytest.raises(
            TypeError,
            match=f'ATMLoss has no setting {named}: '
            'remove it from decode_head.loss_decode'):
        MODELS.build(dict(type='ATMLoss', **settings))


def test_bool_labels_and_empty_batches_are_refused():
    cls, masks = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 2, 2)
    with pytest.raises(ValueError, match='integer class indices'):
        ATMLoss()(cls, masks, torch.zeros(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match='empty batch'):
        ATMLoss()(cls[:, :0], masks[:, :0], torch.zeros(0, 4, 4).long())


def test_uint8_labels_with_more_than_255_classes():
    """Labels as uint8 (MMSeg's LoadAnnotations reads them so) with K > 255
    classes, of which the image shows some below 255: the same loss as int64
    labels (K did not fit the labels' dtype: RuntimeError)."""
    num_classes = 300
    cls = torch.randn(1, 1, num_classes, num_classes + 1)
    masks = torch.randn(1, 1, num_classes, 4, 4)
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :4], labels[0, 4:6] = 255, 3
    present = present_classes(labels.to(torch.uint8), num_classes, 255)
    assert present[0].nonzero().flatten().tolist() == [0, 3]
    want = ATMLoss()(cls, masks, labels)
    got = ATMLoss()(cls, masks, labels.to(torch.uint8))
    for name in want:
        torch.testing.assert_close(got[name], want[name])


def test_padding_label_with_another_ignore_index_names_seg_pad_val():
    cls, masks = torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 2, 2)
    labels = torch.full((1, 4, 4), 255)
    labels[0, :2] = 1
    with pytest.raises(
            ValueError,
            match=r'label value 255 .*ignore_index '
            r'\(0\).*seg_pad_val .*to ignore_index'):
        ATMLoss()(cls, masks, labels, ignore_index=0)


@pytest.mark.parametrize('num_points', [1e3, 100.5, True])
def test_num_points_must_be_an_int(num_points):
    """A float (``1e3`` in a config) failed inside ``torch.rand``."""
    with pytest.raises(
            ValueError,
            match=r'num_points must be None or an '
            r'int >= 1 .*got ' + str(num_points)):
        ATMLoss(num_points=num_points)


def test_labels_on_the_meta_device_are_refused():
    """Which masks are supervised depends on the label values, which meta
    tensors do not have."""
    cls = torch.empty(1, 1, 3, 4, device='meta')
    masks = torch.empty(1, 1, 3, 2, 2, device='meta')
    labels = torch.empty(1, 4, 4, dtype=torch.long, device='meta')
    with pytest.raises(
            ValueError, match='labels on the meta device.*real '
            'labels'):
        ATMLoss()(cls, masks, labels)


class _WithArea(ATMLoss):
    """ATMLoss plus a term: one method and one table entry."""
    terms = ATMLoss.terms + (('loss_area', 'area_weight'), )
    area_weight = 3.0

    def loss_area(self, cls_logits, masks, targets):
        # predicted minus true area of each supervised mask, per output
        diff = masks.logits.sigmoid().mean(-1) - masks.targets.mean(-1)
        return diff.abs().sum(-1) / targets.num_masks


def test_a_new_term_is_one_method_and_one_table_entry():
    cls = torch.randn(2, 2, 3, 4)
    masks = torch.randn(2, 2, 3, 4, 4)
    label = torch.tensor([[[0, 0], [1, 255]], [[2, 2], [2, 2]]])
    base = ATMLoss(loss_weight=0.5)(cls, masks, label)
    extended = _WithArea(loss_weight=0.5)(cls, masks, label)
    assert list(extended) == list(base) + ['loss_area_0', 'loss_area']
    for key in base:
        torch.testing.assert_close(extended[key], base[key])
    # weighted by its own weight and loss_weight, one value per output
    big = F.interpolate(
        masks.flatten(0, 1), size=(2, 2), mode='bilinear',
        align_corners=False).sigmoid().view(2, 2, 3, 2, 2)
    pairs = [(0, 0), (0, 1), (1, 2)]
    for i, key in enumerate(['loss_area_0', 'loss_area']):
        areas = [(big[i, b, c].mean() - (label[b] == c).float().mean()).abs()
                 for b, c in pairs]
        torch.testing.assert_close(extended[key],
                                   1.5 * torch.stack(areas).sum() / 3)


def test_targets_are_split_from_the_terms():
    label = torch.tensor([[[0, 0], [1, 255]], [[2, 2], [2, 255]]])
    targets = ATMLoss().get_targets(label, 3, 255, torch.device('cpu'))
    assert targets.classes.tolist() == [[0, 1, 3], [3, 3, 2]]
    assert targets.batch_index.tolist() == [0, 0, 1]
    assert targets.class_index.tolist() == [0, 1, 2]
    assert targets.masks.tolist() == [[[True, True], [False, False]],
                                      [[False, False], [True, False]],
                                      [[True, True], [True, False]]]
    assert targets.num_masks.item() == 3
    samples = ATMLoss().sample_masks(torch.randn(2, 2, 3, 1, 1), targets)
    assert samples.logits.shape == (2, 3, 4)
    assert samples.targets.shape == (3, 4)
    none = ATMLoss().get_targets(
        torch.full((1, 2, 2), 255), 3, 255, torch.device('cpu'))
    assert none.classes.tolist() == [[3, 3, 3]] and none.num_masks == 1
    empty = ATMLoss().sample_masks(torch.randn(2, 1, 3, 4, 4), none)
    assert empty.logits.shape == (2, 0, 16)
