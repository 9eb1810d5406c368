import pytest
import torch
from fixtures import data_samples, feature_maps, tiny_head


@pytest.mark.parametrize('grid', [(4, 4), (3, 7)])
def test_forward_shapes_square_and_non_square(grid):
    head = tiny_head(num_classes=5)
    cls, masks = head(feature_maps(grids=[grid] * 3))
    assert cls.shape == (3, 2, 5, 6)
    assert masks.shape == (3, 2, 5, *grid)


def test_multi_level_4d_inputs_deepest_first():
    head = tiny_head(in_channels=[16, 32, 64]).eval()
    feats = feature_maps(
        channels=[16, 32, 64], grids=[(16, 12), (8, 6), (4, 3)])
    cls, masks = head(feats)
    # masks live on the grid of the last stage used: the shallowest input
    assert masks.shape == (3, 2, 5, 16, 12)
    assert head.input_projs[0].in_features == 64  # stage 0 = deepest


def test_masks_are_cumulative_over_stages():
    head = tiny_head().eval()
    feats = feature_maps(grids=[(6, 6), (6, 6), (3, 3)])
    cls, masks = head(feats)
    # recompute each stage's own mask and check the running sum
    stages = head._to_tokens(feats)
    query = head.q.weight.expand(2, -1, -1)
    own = []
    for (tokens, grid), proj, norm, dec in zip(stages, head.input_projs,
                                               head.proj_norms, head.decoders):
        qs, ms = dec(query, norm(proj(tokens)))
        query = qs[-1]
        m = ms[-1].unflatten(2, grid)
        own.append(
            torch.nn.functional.interpolate(
                m, size=(6, 6), mode='bilinear', align_corners=False))
    torch.testing.assert_close(masks[0], own[0])
    torch.testing.assert_close(masks[2], own[0] + own[1] + own[2])


def test_token_inputs_with_grid_match_maps():
    head = tiny_head().eval()
    feats = feature_maps(grids=[(3, 5)] * 3)
    tokens = [(f.flatten(2).transpose(1, 2), (3, 5)) for f in feats]
    out_maps, out_tokens = head(feats), head(tokens)
    torch.testing.assert_close(out_maps[1], out_tokens[1])


def test_input_errors_name_the_problem():
    head = tiny_head()
    with pytest.raises(ValueError, match='grid size'):
        head([torch.randn(1, 12, 32)] * 3)
    with pytest.raises(ValueError, match='do not fit the grid'):
        head([(torch.randn(1, 12, 32), (3, 5))] * 3)
    with pytest.raises(ValueError, match='in_channels'):
        head(feature_maps(channels=16))
    with pytest.raises(ValueError, match='use_stages'):
        tiny_head(use_stages=3, in_index=[0, 1])
    with pytest.raises(ValueError, match='divisible'):
        tiny_head(embed_dims=30)
    with pytest.raises(ValueError, match='mask_mode'):
        tiny_head(mask_mode='sum')


def test_per_layer_mode_gives_one_output_per_layer():
    head = tiny_head(
        in_channels=32,
        use_stages=1,
        num_layers=3,
        use_proj=False,
        mask_mode='per_layer').eval()
    cls, masks = head(feature_maps(grids=[(4, 5)]))
    assert cls.shape == (3, 2, 5, 6) and masks.shape == (3, 2, 5, 4, 5)
    assert not any('input_projs' in n for n, _ in head.named_parameters())


def test_predict_resizes_masks_before_combining():
    head = tiny_head().eval()
    feats = feature_maps(grids=[(4, 6)] * 3)
    cls, masks = head(feats)
    metas = [dict(img_shape=(30, 44), pad_shape=(32, 48))] * 2
    logits = head.predict_by_feat((cls, masks), metas)
    assert logits.shape == (2, 5, 32, 48)
    up = torch.nn.functional.interpolate(
        masks[-1], size=(32, 48), mode='bilinear', align_corners=False)
    expected = torch.einsum('bqc,bqhw->bchw', cls[-1].softmax(-1)[..., :-1],
                            up.sigmoid())
    torch.testing.assert_close(logits, expected)
    slide = [dict(img_shape=torch.Size((20, 24)))] * 2
    assert head.predict_by_feat((cls, masks), slide).shape == (2, 5, 20, 24)


def test_loss_reaches_every_parameter_and_reports_accuracy():
    head = tiny_head()
    feats = feature_maps(grids=[(4, 4)] * 3)
    labels = torch.randint(0, 5, (2, 16, 16))
    labels[0, :4] = 255
    losses = head.loss(feats, data_samples(labels), train_cfg=None)
    assert 'acc_seg' in losses and 0 <= losses['acc_seg'].item() <= 100
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None]
    assert not missing, missing
    zero = [n for n, p in head.named_parameters() if not p.grad.any()]
    assert not zero, zero


def test_loss_runs_in_fp32_under_autocast():
    head = tiny_head()
    feats = feature_maps(grids=[(4, 4)] * 3)
    labels = torch.randint(0, 5, (2, 8, 8))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = head.loss(feats, data_samples(labels), train_cfg=None)
    assert all(v.dtype == torch.float32 for v in losses.values())
    assert all(torch.isfinite(v) for v in losses.values())


def test_head_with_kmeans_trains_every_parameter():
    head = tiny_head(
        num_classes=4,
        cross_attn_cfg=dict(type='KMeansCrossAttention'),
        mask_mode='per_layer',
        loss_decode=dict(type='ATMLoss'))
    head.train()
    inputs = feature_maps(batch=2, grids=((4, 6), (4, 6), (4, 6)))
    cls_logits, mask_logits = head(inputs)
    assert cls_logits.shape == (6, 2, 4, 5)
    assert mask_logits.shape == (6, 2, 4, 4, 6)
    labels = torch.randint(0, 4, (2, 32, 48))
    losses = head.loss_by_feat((cls_logits, mask_logits), data_samples(labels))
    loss = sum(v for k, v in losses.items() if k.startswith('loss'))
    assert torch.isfinite(loss)
    loss.backward()
    # every parameter learns (no unused parameters under DDP)
    for name, p in head.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # the state dict matches the softmax head's, key for key
    softmax = tiny_head(num_classes=4, mask_mode='per_layer')
    assert head.state_dict().keys() == softmax.state_dict().keys()


def test_decoder_cfg_reaches_every_decoder_layer_with_the_same_keys():
    """act_cfg, norm_cfg and pre_norm of ATMDecoderLayer through the head:

    the layers change, their state-dict keys do not (so checkpoints and
    converters keep working), and the computation follows the order.
    """
    torch.manual_seed(0)
    official = tiny_head().eval()
    head = tiny_head(
        decoder_cfg=dict(
            act_cfg=dict(type='GELU'),
            norm_cfg=dict(type='LN', eps=1e-6),
            pre_norm=True)).eval()
    layers = [layer for d in head.decoders for layer in d.layers]
    assert len(layers) == 6
    for layer in layers:
        assert layer.pre_norm is True
        assert isinstance(layer.activation, torch.nn.GELU)
        assert all(n.eps == 1e-6
                   for n in (layer.norm1, layer.norm2, layer.norm3))
    assert list(head.state_dict()) == list(official.state_dict())
    head.load_state_dict(official.state_dict())
    feats = feature_maps(batch=1)
    cls, masks = head(feats)
    want_cls, want_masks = official(feats)
    assert cls.shape == want_cls.shape and masks.shape == want_masks.shape
    # same weights, another layer: other outputs
    assert not torch.allclose(cls, want_cls)
    # the default is the official layer
    assert all(
        not layer.pre_norm and isinstance(layer.activation, torch.nn.ReLU)
        for d in official.decoders for layer in d.layers)
    with pytest.raises(TypeError, match='pre_nrom'):
        tiny_head(decoder_cfg=dict(pre_nrom=True))
