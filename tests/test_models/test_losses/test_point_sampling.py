"""Every optimised path against the straightforward one, on tiny shapes."""
import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmseg.models.backbones import VisionTransformer
from mmcv.ops import point_sample
from mmseg.models.losses import accuracy
from mmseg.registry import MODELS

from fixtures import data_samples, feature_maps, tiny_head
from mmseg_segvit.models.layers import (ATMCrossAttention, ATMDecoder,
                                        FusedMultiheadAttention,
                                        ViTEncoderLayer, set_fused_attn)
from mmseg_segvit.models.losses.atm_loss import (dice_loss, present_classes,
                                                 sigmoid_focal_loss)
from mmseg_segvit.models.losses.point_sampling import (sample_mask_points,
                                                       uncertain_point_coords)

VIT = dict(
    img_size=(32, 48),
    patch_size=8,
    embed_dims=32,
    num_layers=2,
    num_heads=4,
    out_indices=[0, 1],
    final_norm=False,
    with_cls_token=False)


# --- attention ---
def test_cross_attention_fused_path_matches_explicit():
    attn = ATMCrossAttention(32, num_heads=4).eval()
    q, k = torch.randn(2, 5, 32), torch.randn(2, 11, 32)
    explicit, mask = attn(q, k, need_mask=True)
    fused, none = attn(q, k, need_mask=False)
    assert none is None and mask.shape == (2, 5, 11)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)


def test_cross_attention_fused_path_gradients_match():
    attn = ATMCrossAttention(16, num_heads=2).eval()
    q = torch.randn(1, 3, 16, requires_grad=True)
    k = torch.randn(1, 6, 16, requires_grad=True)
    grads = []
    for need_mask in (True, False):
        out, _ = attn(q, k, need_mask=need_mask)
        grads.append(torch.autograd.grad(out.square().sum(), (q, k)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_decoder_masks_only_where_used():
    dec = ATMDecoder(3, embed_dims=32, num_heads=4).eval()
    q, t = torch.randn(1, 4, 32), torch.randn(1, 6, 32)
    calls = []
    for layer in dec.layers:
        layer.multihead_attn.register_forward_hook(
            lambda m, args, kwargs, out: calls.append(out[1] is not None),
            with_kwargs=True)
    dec(q, t)
    assert calls == [False, False, True]


def test_torch_self_attention_without_weights_equals_with_weights():
    # ATM query self-attention passes need_weights=False, which sends
    # F.multi_head_attention_forward to F.scaled_dot_product_attention.
    mha = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x = torch.randn(2, 7, 32)
    with_weights = mha(x, x, x, need_weights=True)[0]
    fused = mha(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(fused, with_weights, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('batch_first', [True, False])
def test_fused_mmcv_attention_matches_mmcv(batch_first):
    ref = MultiheadAttention(32, 4, batch_first=batch_first).eval()
    fused = FusedMultiheadAttention(32, 4, batch_first=batch_first).eval()
    fused.load_state_dict(ref.state_dict())  # strict: same keys
    x = torch.randn(2, 9, 32) if batch_first else torch.randn(9, 2, 32)
    pos = torch.randn_like(x)
    torch.testing.assert_close(
        fused(x, query_pos=pos), ref(x, query_pos=pos), rtol=1e-5, atol=1e-6)


def test_fused_vit_matches_mmseg_vit_and_loads_its_weights():
    ref = VisionTransformer(**VIT)
    fused = MODELS.build(dict(type='FusedVisionTransformer', **VIT))
    fused.load_state_dict(ref.state_dict())  # strict: same keys
    assert all(
        isinstance(layer.attn, FusedMultiheadAttention)
        for layer in fused.layers)
    ref.eval()
    fused.eval()
    x = torch.randn(2, 3, 32, 48, requires_grad=True)
    outs_ref, outs_fused = ref(x), fused(x)
    for a, b in zip(outs_ref, outs_fused):
        assert a.shape == (2, 32, 4, 6)
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    g_ref = torch.autograd.grad(outs_ref[-1].sum(), x)[0]
    g_fused = torch.autograd.grad(outs_fused[-1].sum(), x)[0]
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-4, atol=1e-5)


def test_fused_vit_can_be_switched_off():
    vit = MODELS.build(
        dict(type='FusedVisionTransformer', fused_attn=False, **VIT))
    assert type(vit.layers[0].attn) is MultiheadAttention
    assert vit.fused_attn is False


def test_fused_attn_global_default_applies_only_when_set():
    """Like timm's set_fused_attn: a default for modules built later."""
    assert ViTEncoderLayer(32, 4, 64).fused_attn
    try:
        set_fused_attn(False)
        assert type(ViTEncoderLayer(32, 4, 64).attn) is MultiheadAttention
        assert ViTEncoderLayer(32, 4, 64, fused_attn=True).fused_attn
    finally:
        set_fused_attn(True)
    assert isinstance(ViTEncoderLayer(32, 4, 64).attn,
                      FusedMultiheadAttention)


def test_fused_vit_layers_follow_mmseg_arguments():
    """Rebuilt layers carry mmseg's per-layer settings (drop-path rule,
    frozen parameters)."""
    cfg = dict(VIT, drop_path_rate=0.2, num_layers=3, out_indices=[2],
               frozen_exclude=['pos_embed'])
    ref = VisionTransformer(**cfg)
    fused = MODELS.build(dict(type='FusedVisionTransformer', **cfg))
    for a, b in zip(ref.layers, fused.layers):
        assert repr(a.ffn) == repr(b.ffn)  # same DropPath rates
        assert a.attn.attn.dropout == b.attn.attn.dropout
    assert [p.requires_grad for p in ref.parameters()] == [
        p.requires_grad for p in fused.parameters()]


# --- inference order ---
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
    torch.testing.assert_close(fine,
                               head.predict_by_feat((cls, masks),
                                                    _metas(16, 24)))
    with pytest.raises(ValueError, match='fast_inference_scale'):
        tiny_head(fast_inference_scale=0)


@pytest.mark.parametrize('fast', [False, True])
def test_accuracy_follows_the_inference_order(fast, monkeypatch):
    """acc_seg is MMSeg's accuracy of the head's own prediction, although
    the head never builds the (B, K, H, W) scores for it."""
    from mmseg_segvit.models.decode_heads import atm_head
    torch.manual_seed(0)
    head = tiny_head(fast_inference=fast)
    labels = torch.randint(0, 5, (2, 16, 24))
    labels[0, :3] = 255
    feats = feature_maps(grids=[(4, 6)] * 3)
    outputs = []
    real = atm_head.combine
    monkeypatch.setattr(
        atm_head, 'combine',
        lambda *a, **k: outputs.append(k.get('output', 'scores')) or real(
            *a, **k))
    losses = head.loss(feats, data_samples(labels), None)
    assert outputs == ['labels']  # never the full scores in training
    with torch.no_grad():
        cls, masks = head(feats)
        scores = head.predict_by_feat((cls, masks), _metas(16, 24) * 2)
    want = accuracy(scores, labels, ignore_index=255)
    torch.testing.assert_close(losses['acc_seg'], want)
    assert 0 < losses['acc_seg'].item() < 100


# --- loss targets ---
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


# --- point-sampled (memory-lean) mask losses ---
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
        dict(
            type='ATMLoss', num_points=20000, importance_sample_ratio=0.0))
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
        loss_decode=dict(type='ATMLoss', num_points=50),
        fast_inference=True)
    labels = torch.randint(0, 5, (2, 16, 24))
    losses = head.loss(
        feature_maps(grids=[(4, 6)] * 3), data_samples(labels), None)
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    assert all(p.grad is not None for p in head.parameters())


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
