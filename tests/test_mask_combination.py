"""Banded resize, mask combination and labels against the literal
resize-sigmoid-einsum and MMSeg's accuracy."""
import pytest
import torch
import torch.nn.functional as F
from mmseg.models.losses import accuracy

from helpers import feature_maps, tiny_head
from mmseg_segvit.models.layers import (combine_resized_masks,
                                        combined_labels, resize_in_bands,
                                        resized_labels)
from mmseg_segvit.models.losses import label_accuracy


def literal(cls_prob, masks, size, align_corners):
    resized = F.interpolate(
        masks, size=size, mode='bilinear', align_corners=align_corners)
    return torch.einsum('bqc,bqhw->bchw', cls_prob, resized.sigmoid())


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('band', [1, 37, 1 << 20])
def test_banded_combination_equals_the_literal_one(align_corners, band):
    torch.manual_seed(0)
    cls_prob = torch.randn(2, 6, 5).softmax(-1)
    masks = torch.randn(2, 6, 4, 7) * 3
    got = combine_resized_masks(cls_prob, masks, (17, 30), align_corners,
                                band_elements=band)
    assert got.shape == (2, 5, 17, 30)
    torch.testing.assert_close(
        got, literal(cls_prob, masks, (17, 30), align_corners))


def test_downsizing_and_non_square_sizes():
    cls_prob = torch.rand(1, 3, 4)
    masks = torch.randn(1, 3, 9, 5)
    for align_corners in (False, True):
        got = combine_resized_masks(cls_prob, masks, (4, 11), align_corners)
        torch.testing.assert_close(
            got, literal(cls_prob, masks, (4, 11), align_corners))
    # a single output row, and bf16 inputs
    got = combine_resized_masks(cls_prob, masks, (1, 8), True)
    torch.testing.assert_close(got, literal(cls_prob, masks, (1, 8), True))
    half = combine_resized_masks(cls_prob.bfloat16(), masks.bfloat16(),
                                 (12, 7))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(
        half.float(), literal(cls_prob, masks, (12, 7), False),
        rtol=0.05, atol=0.05)


def test_mismatched_inputs_are_named():
    with pytest.raises(ValueError, match='differ in batch or query count'):
        combine_resized_masks(
            torch.rand(1, 4, 3), torch.randn(1, 5, 2, 2), (4, 4))


def test_head_prediction_uses_it_and_matches_the_literal_order():
    head = tiny_head().eval()
    with torch.no_grad():
        cls, masks = head(feature_maps(batch=2, grids=[(4, 6)] * 3))
        scores = head.predict_by_feat(
            (cls, masks), [dict(img_shape=(20, 30), pad_shape=(20, 30))] * 2)
    want = literal(
        F.softmax(cls[-1], -1)[..., :-1], masks[-1], (20, 30), False)
    assert scores.shape == (2, 5, 20, 30)
    torch.testing.assert_close(scores, want)


def test_same_size_needs_no_resize():
    cls_prob = torch.rand(2, 3, 4)
    masks = torch.randn(2, 3, 5, 6)
    got = combine_resized_masks(cls_prob, masks, (5, 6))
    torch.testing.assert_close(
        got, torch.einsum('bqc,bqhw->bchw', cls_prob, masks.sigmoid()))


@pytest.mark.parametrize('size', [(13, 22), (4, 3), (6, 9)])
def test_bands_tile_the_resized_maps(size):
    maps = torch.randn(2, 3, 6, 9)
    want = F.interpolate(maps, size=size, mode='bilinear')
    bands = list(resize_in_bands(maps, size, band_elements=2 * 3 * 2 * 9))
    assert bands[0][0] == 0 and bands[-1][1] == size[0]
    for (_, bottom, _), (top, _, _) in zip(bands, bands[1:]):
        assert bottom == top
    got = torch.cat([band for _, _, band in bands], dim=2)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize('band', [1, 1 << 20])
def test_labels_are_the_argmax_of_the_scores(band):
    torch.manual_seed(1)
    cls_prob = torch.randn(2, 6, 5).mul(3).softmax(-1)
    masks = torch.randn(2, 6, 4, 7) * 3
    scores = literal(cls_prob, masks, (17, 30), False)
    labels = combined_labels(cls_prob, masks, (17, 30), band_elements=band)
    assert labels.shape == (2, 17, 30) and labels.dtype == torch.long
    assert torch.equal(labels, scores.argmax(1))
    assert labels.unique().numel() > 1  # not a constant map
    small = torch.randn(2, 5, 4, 7)
    want = F.interpolate(small, size=(17, 30), mode='bilinear',
                         align_corners=True).argmax(1)
    assert torch.equal(
        resized_labels(small, (17, 30), True, band_elements=band), want)


def test_label_accuracy_equals_mmseg_accuracy():
    torch.manual_seed(2)
    scores = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, 0] = 255
    for ignore in (255, None):
        want = accuracy(scores, target.clamp(max=3) if ignore is None
                        else target, ignore_index=ignore)
        got = label_accuracy(scores.argmax(1), target.clamp(max=3)
                             if ignore is None else target, ignore)
        torch.testing.assert_close(got, want)
    perfect = label_accuracy(target, target, 255)
    torch.testing.assert_close(perfect, torch.tensor([100.0]))
    ignored = torch.full_like(target, 255)  # MMSeg gives eps / eps
    torch.testing.assert_close(
        label_accuracy(target, ignored, 255),
        accuracy(scores, ignored, ignore_index=255))
    with pytest.raises(ValueError, match='differ in shape'):
        label_accuracy(target[:, :4], target)
