"""ATMHead's inference orders: the faithful one (resize the masks, then
combine) and the fast one (combine, then resize), and the training accuracy
that follows the chosen order."""
import pytest
import torch
import torch.nn.functional as F
from fixtures import data_samples, feature_maps, tiny_head, tiny_segmentor
from mmseg.models.losses import accuracy


def _metas(h, w):
    return [dict(img_shape=(h, w), pad_shape=(h, w))]


def test_fast_inference_is_exact_without_resize():
    faithful = tiny_head().eval()
    fast = tiny_head(fast_inference=True).eval()
    fast.load_state_dict(faithful.state_dict())
    out = faithful(feature_maps(batch=1, grids=[(4, 6)] * 3))
    torch.testing.assert_close(
        fast.predict_by_feat(out, _metas(4, 6)),
        faithful.predict_by_feat(out, _metas(4, 6)))


def test_fast_inference_combines_then_resizes():
    head = tiny_head(fast_inference=True, fast_inference_scale=1).eval()
    cls, masks = head(feature_maps(batch=1, grids=[(4, 6)] * 3))
    scores = head.predict_by_feat((cls, masks), _metas(16, 24))
    low = head.semantic_inference(cls[-1], masks[-1])
    expected = F.interpolate(
        low, size=(16, 24), mode='bilinear', align_corners=False)
    assert scores.shape == (1, 5, 16, 24)
    torch.testing.assert_close(scores, expected)
    # the faithful order differs, but only slightly on smooth masks
    head.fast_inference = False
    faithful = head.predict_by_feat((cls, masks), _metas(16, 24))
    assert not torch.equal(scores, faithful)
    torch.testing.assert_close(scores, faithful, rtol=0, atol=0.1)


def test_fast_inference_scale_combines_at_a_finer_grid():
    head = tiny_head(fast_inference=True, fast_inference_scale=2).eval()
    cls, masks = head(feature_maps(batch=1, grids=[(4, 6)] * 3))
    scores = head.predict_by_feat((cls, masks), _metas(16, 24))
    finer = F.interpolate(
        masks[-1], size=(8, 12), mode='bilinear', align_corners=False)
    expected = F.interpolate(
        head.semantic_inference(cls[-1], finer),
        size=(16, 24),
        mode='bilinear',
        align_corners=False)
    torch.testing.assert_close(scores, expected)
    # a scale that reaches the output size is the faithful order
    head.fast_inference_scale = 4
    fine = head.predict_by_feat((cls, masks), _metas(16, 24))
    head.fast_inference = False
    torch.testing.assert_close(
        fine, head.predict_by_feat((cls, masks), _metas(16, 24)))
    with pytest.raises(ValueError, match='fast_inference_scale'):
        tiny_head(fast_inference_scale=0)


@pytest.mark.parametrize('fast', [False, True])
def test_accuracy_follows_the_inference_order(fast, monkeypatch):
    """acc_seg is MMSeg's accuracy of the head's own prediction, although the
    head never builds the (B, K, H, W) scores for it."""
    from mmseg_segvit.models.decode_heads import atm_head
    torch.manual_seed(0)
    head = tiny_head(fast_inference=fast)
    labels = torch.randint(0, 5, (2, 16, 24))
    labels[0, :3] = 255
    feats = feature_maps(grids=[(4, 6)] * 3)
    outputs = []
    real = atm_head.combine
    monkeypatch.setattr(
        atm_head, 'combine', lambda *a, **k: outputs.append(
            k.get('output', 'scores')) or real(*a, **k))
    losses = head.loss(feats, data_samples(labels), None)
    assert outputs == ['labels']  # never the full scores in training
    with torch.no_grad():
        cls, masks = head(feats)
        scores = head.predict_by_feat((cls, masks), _metas(16, 24) * 2)
    want = accuracy(scores, labels, ignore_index=255)
    torch.testing.assert_close(losses['acc_seg'], want)
    assert 0 < losses['acc_seg'].item() < 100


def test_faithful_inference_without_grad_matches_with_grad():
    head = tiny_head().eval()
    cls, masks = head(feature_maps(batch=1, grids=[(4, 6)] * 3))
    with_grad = head.predict_by_feat((cls, masks), _metas(16, 24))
    assert with_grad.requires_grad
    with torch.no_grad():
        without = head.predict_by_feat((cls, masks), _metas(16, 24))
    resized = F.interpolate(
        masks[-1], size=(16, 24), mode='bilinear', align_corners=False)
    expected = head.semantic_inference(cls[-1], resized)
    torch.testing.assert_close(without, expected.detach())
    torch.testing.assert_close(with_grad, expected)


@pytest.mark.parametrize('head', [
    dict(),
    dict(fast_inference=True),
    dict(
        mask_mode='per_layer',
        loss_decode=dict(type='ATMLoss'),
        cross_attn_cfg=dict(type='KMeansCrossAttention')),
])
def test_inference_on_the_meta_device(head):
    """A model moved to ``meta`` (shapes and FLOPs without memory) infers:

    meta has no autocast, which the mask combination and the k-means attention
    used to ask torch about (RuntimeError).
    """
    model = tiny_segmentor(**head).eval().to('meta')
    metas = [dict(img_shape=(37, 29), pad_shape=(37, 29))]
    with torch.no_grad():
        out = model.encode_decode(
            torch.empty(1, 3, 37, 29, device='meta'), metas)
    assert out.is_meta and out.shape == (1, 5, 37, 29)


@pytest.mark.parametrize('grad', [False, True])
def test_flop_counter_mode_with_and_without_gradients(grad):
    """``torch.utils.flop_counter.FlopCounterMode`` (whose module hooks cannot
    take a view of a parameter made under ``no_grad``, such as the batched
    class queries were) counts the head also without gradients."""
    from torch.utils.flop_counter import FlopCounterMode
    model = tiny_segmentor().eval()
    metas = [dict(img_shape=(32, 48), pad_shape=(32, 48))]
    with FlopCounterMode(display=False) as counter, \
            torch.set_grad_enabled(grad):
        model.encode_decode(torch.randn(1, 3, 32, 48), metas)
    assert sum(counter.get_flop_counts()['ATMDecoder'].values()) > 0
