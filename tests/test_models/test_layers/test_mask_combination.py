"""Banded resize, mask combination and labels against the literal resize-
sigmoid-einsum and MMSeg's accuracy."""
import pytest
import torch
import torch.nn.functional as F
from fixtures import feature_maps, tiny_head

from mmseg_segvit.models.layers import (combine, combine_resized_masks,
                                        combined_labels, memory_budget,
                                        memory_plan, resize_in_bands,
                                        resized_labels)


def literal(cls_prob, masks, size, align_corners):
    resized = F.interpolate(
        masks, size=size, mode='bilinear', align_corners=align_corners)
    return torch.einsum('bqc,bqhw->bchw', cls_prob, resized.sigmoid())


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('rows', [1, 5, 17, None])
def test_banded_combination_equals_the_literal_one(align_corners, rows):
    torch.manual_seed(0)
    cls_prob = torch.randn(2, 6, 5).softmax(-1)
    masks = torch.randn(2, 6, 4, 7) * 3
    got = combine_resized_masks(
        cls_prob, masks, (17, 30), align_corners, rows=rows)
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
        half.float(),
        literal(cls_prob, masks, (12, 7), False),
        rtol=0.05,
        atol=0.05)


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
    bands = list(resize_in_bands(maps, size, rows=2))
    assert bands[0][0] == 0 and bands[-1][1] == size[0]
    for (_, bottom, _), (top, _, _) in zip(bands, bands[1:]):
        assert bottom == top
    got = torch.cat([band for _, _, band in bands], dim=2)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize('size,rows', [((5, 6), None), ((5, 6), 2),
                                       ((17, 6), 4), ((5, 30), 2)])
def test_the_inputs_are_never_overwritten(size, rows):
    """The sigmoid is taken in place only on bands of their own, never on the
    masks or a view of them (same size, or an axis not resized)."""
    cls_prob = torch.rand(2, 3, 4)
    masks = torch.randn(2, 3, 5, 6)
    before = masks.clone()
    got = combine_resized_masks(cls_prob, masks, size, rows=rows)
    assert torch.equal(masks, before)
    torch.testing.assert_close(got, literal(cls_prob, masks, size, False))
    labels = combined_labels(cls_prob, masks, size, rows=rows)
    assert torch.equal(masks, before)
    assert torch.equal(labels, got.argmax(1))


@pytest.mark.parametrize('band', [1, 7, None])
def test_labels_are_the_argmax_of_the_scores(band):
    torch.manual_seed(1)
    cls_prob = torch.randn(2, 6, 5).mul(3).softmax(-1)
    masks = torch.randn(2, 6, 4, 7) * 3
    scores = literal(cls_prob, masks, (17, 30), False)
    labels = combined_labels(cls_prob, masks, (17, 30), rows=band)
    assert labels.shape == (2, 17, 30) and labels.dtype == torch.long
    assert torch.equal(labels, scores.argmax(1))
    assert labels.unique().numel() > 1  # not a constant map
    small = torch.randn(2, 5, 4, 7)
    want = F.interpolate(
        small, size=(17, 30), mode='bilinear', align_corners=True).argmax(1)
    assert torch.equal(resized_labels(small, (17, 30), True, rows=band), want)


def test_one_piece_is_one_resize(monkeypatch):
    calls = []
    real = F.interpolate
    monkeypatch.setattr(F, 'interpolate',
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    cls = torch.randn(2, 6, 6)
    masks = torch.randn(2, 6, 4, 7)
    with memory_budget(float('inf')):
        combine(cls, masks, (17, 30))
    assert len(calls) == 1
    calls.clear()
    combine_resized_masks(cls.softmax(-1)[..., :-1], masks, (17, 30), rows=4)
    assert len(calls) == 1 + 5  # height once, then each band's width


@pytest.mark.parametrize('budget', [1, float('inf'), None])
@pytest.mark.parametrize('order', ['faithful', 'fast'])
def test_combine_equals_the_straightforward_computation(order, budget):
    torch.manual_seed(3)
    cls = torch.randn(2, 6, 6) * 2
    masks = torch.randn(2, 6, 4, 7) * 3
    size = (17, 30)
    prob = cls.softmax(-1)[..., :-1]
    if order == 'faithful':
        want = literal(prob, masks, size, False)
    else:  # combine at 4x the grid (capped at the size), then resize
        want = F.interpolate(
            literal(prob, masks, (16, 28), False), size=size, mode='bilinear')
    scores = combine(cls, masks, size, order=order, budget=budget)
    labels = combine(
        cls, masks, size, order=order, output='labels', budget=budget)
    torch.testing.assert_close(scores, want)
    assert torch.equal(labels, want.argmax(1))


def test_combine_is_differentiable_in_one_piece(monkeypatch):
    monkeypatch.setattr(memory_plan, 'cpu_band_bytes', lambda: 1)
    cls = torch.randn(1, 3, 4, requires_grad=True)
    masks = torch.randn(1, 3, 4, 5, requires_grad=True)
    combine(cls, masks, (8, 10)).sum().backward()
    assert cls.grad is not None and masks.grad.abs().sum() > 0


def test_combine_refuses_unknown_settings():
    cls, masks = torch.randn(1, 3, 4), torch.randn(1, 3, 2, 2)
    with pytest.raises(ValueError, match='order'):
        combine(cls, masks, (4, 4), order='quick')
    with pytest.raises(ValueError, match='output'):
        combine(cls, masks, (4, 4), output='probs')
    with pytest.raises(ValueError, match='fast_scale'):
        combine(cls, masks, (4, 4), order='fast', fast_scale=0)


def test_autocast_keeps_the_masks_dtype(monkeypatch):
    """Under autocast the masks are resized in their own (bf16) dtype, as the
    official head does, not upcast to the fp32 of the class softmax (an
    autocast fp32 op on CUDA): half the memory and traffic of the (B, Q, H, W)
    masks, and the official numbers."""
    cls_prob = torch.rand(2, 3, 4)  # fp32, as CUDA autocast's softmax
    masks = torch.randn(2, 3, 5, 6).bfloat16()
    seen = []
    interpolate = F.interpolate

    def spy(x, *args, **kwargs):
        seen.append(x.dtype)
        return interpolate(x, *args, **kwargs)

    monkeypatch.setattr(F, 'interpolate', spy)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        official = torch.einsum(
            'bqc,bqhw->bchw', cls_prob,
            interpolate(
                masks, size=(20, 24), mode='bilinear',
                align_corners=False).sigmoid())
        one_piece = combine_resized_masks(cls_prob, masks, (20, 24))
        banded = combine_resized_masks(cls_prob, masks, (20, 24), rows=3)
        labels = combine(
            torch.randn(2, 3, 5), masks, (20, 24), output='labels')
    assert seen and set(seen) == {torch.bfloat16}
    assert one_piece.dtype == banded.dtype == official.dtype
    torch.testing.assert_close(one_piece, official)
    torch.testing.assert_close(
        banded.float(), official.float(), rtol=0.02, atol=0.02)
    assert labels.shape == (2, 20, 24)
    # outside autocast the promoted dtype (fp32) as before
    seen.clear()
    out = combine_resized_masks(cls_prob, masks, (20, 24))
    assert out.dtype == torch.float32 and set(seen) == {torch.float32}
