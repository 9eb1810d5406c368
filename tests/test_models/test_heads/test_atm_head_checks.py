"""Settings ATMHead, ATMLoss and ShrunkViT cannot honour are refused when the
model is built; the inputs they take work end to end (training, whole and slide
inference)."""
import warnings

import pytest
import torch
from fixtures import (data_samples, feature_maps, predict_image, tiny_head,
                      tiny_segmentor, tiny_segmentor_cfg)
from mmengine.config import ConfigDict
from mmseg.registry import MODELS

from mmseg_segvit.models.decode_heads import ATMHead

SLIDE = dict(mode='slide', crop_size=(32, 32), stride=(24, 24))


def _build(**head_kwargs):
    return MODELS.build(ConfigDict(tiny_segmentor_cfg(**head_kwargs)))


def _train_step(model, imgs, labels):
    data = model.data_preprocessor(
        dict(inputs=list(imgs), data_samples=data_samples(labels)),
        training=True)
    loss, _ = model.parse_losses(
        model.loss(data['inputs'], data['data_samples']))
    loss.backward()
    return loss


# --- binary segmentation (mmseg's FAQ: out_channels=1, threshold) --------


@pytest.mark.parametrize('kwargs, setting', [
    (dict(out_channels=1, threshold=0.3), 'out_channels=1'),
    (dict(out_channels=1), 'out_channels=1'),
    (dict(threshold=0.3), 'threshold=0.3'),
])
def test_mmseg_binary_settings_are_refused_at_build(kwargs, setting):
    with pytest.raises(ValueError) as err:
        _build(num_classes=2, **kwargs)
    message = str(err.value)
    assert f'decode_head.{setting}' in message
    assert 'set num_classes=2' in message
    assert 'leave out out_channels and threshold' in message


def test_out_channels_equal_to_num_classes_is_accepted():
    head = tiny_head(num_classes=3, out_channels=3)
    assert head.out_channels == 3


def test_binary_as_two_classes_trains_and_infers_whole_and_slide():
    """num_classes=2 (labels 0/1): no mmseg binary warning, train, whole
    inference and slide inference (crop 32, stride 24) on a 50x70 image."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = tiny_segmentor(num_classes=2, test_cfg=dict(mode='whole'))
    assert not [w for w in caught if 'out_channels' in str(w.message)]
    assert model.decode_head.out_channels == 2
    labels = torch.randint(0, 2, (2, 32, 32))
    loss = _train_step(model,
                       torch.randint(0, 255, (2, 3, 32, 32)).float(), labels)
    assert torch.isfinite(loss)
    model.eval()
    img = torch.randint(0, 255, (3, 50, 70)).float()
    for test_cfg in (dict(mode='whole'), SLIDE):
        model.test_cfg = ConfigDict(test_cfg)
        out = predict_image(model, img)
        assert out.seg_logits.data.shape == (2, 50, 70)
        pred = out.pred_sem_seg.data
        assert pred.shape == (1, 50, 70)
        torch.testing.assert_close(pred[0], out.seg_logits.data.argmax(0))


def test_one_class_slide_inference_predicts_that_class():
    model = tiny_segmentor(num_classes=1, test_cfg=SLIDE).eval()
    out = predict_image(model, torch.randint(0, 255, (3, 50, 70)).float())
    assert out.seg_logits.data.shape == (1, 50, 70)
    assert (out.pred_sem_seg.data == 0).all()


# --- the loss ------------------------------------------------------------


@pytest.mark.parametrize('loss, name', [
    (dict(type='CrossEntropyLoss'), 'CrossEntropyLoss'),
    (dict(type='CrossEntropyLoss', use_sigmoid=True), 'CrossEntropyLoss'),
    (dict(type='DiceLoss'), 'DiceLoss'),
    (dict(type='LovaszLoss', reduction='none'), 'LovaszLoss'),
])
def test_a_stock_pixel_loss_is_refused_at_build(loss, name):
    with pytest.raises(ValueError) as err:
        _build(loss_decode=loss)
    message = str(err.value)
    assert f'decode_head.loss_decode is {name}' in message
    assert "loss_decode=dict(type='ATMLoss')" in message


def test_a_list_of_losses_is_refused_at_build():
    with pytest.raises(ValueError, match='loss_decode is a list.*ATMLoss'):
        _build(loss_decode=[dict(type='ATMLoss'), dict(type='DiceLoss')])


@pytest.mark.parametrize(
    'head, outputs',
    [
        (dict(), 3),  # cumulative: one output per stage
        (dict(mask_mode='per_layer'), 6),  # 3 stages x 2 layers
    ])
def test_the_head_decides_the_number_of_outputs(head, outputs):
    model = _build(loss_decode=dict(type='ATMLoss'), **head)
    cls, _ = model.decode_head(model.extract_feat(torch.zeros(1, 3, 32, 32)))
    assert cls.shape[0] == outputs


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(sampler=dict(type='OHEMPixelSampler', thresh=0.7)),
         r'decode_head\.sampler=.*remove decode_head\.sampler'),
        (dict(input_transform='resize_concat'),
         r"input_transform='resize_concat'.*remove"),
        (dict(num_classes=0), r'num_classes must be an int >= 1, got 0'),
        (dict(ignore_index=None), r'ignore_index=None.*ignore_index=255'),
        (dict(dropout=1.5),
         r'decode_head\.dropout must be a number in \[0, 1\)'),
        (dict(dropout='abc'),
         r"decode_head\.dropout must be a number in \[0, 1\), got 'abc'"),
        (dict(ffn_ratio=0), r'decode_head\.ffn_ratio must be > 0'),
        (dict(num_layers=0), r'decode_head\.num_layers must be an int >= 1'),
        # floats, e.g. embed_dims=768 / 2, failed inside torch or range()
        (dict(embed_dims=32.0),
         r'decode_head\.embed_dims must be an int >= 1, '
         r'got 32\.0'),
        (dict(num_heads=0), r'decode_head\.num_heads must be an int >= 1'),
        (dict(use_stages=3.0), r'decode_head\.use_stages must be an int >= 1'),
        (dict(ffn_ratio=2.5),
         r'decode_head\.ffn_ratio must be > 0 and an int'),
    ])
def test_other_inherited_settings_are_refused_at_build(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _build(**kwargs)


# --- backbone outputs ----------------------------------------------------


def _cls_token_segmentor(output_cls_token, test_cfg=None):
    """mmseg's DPT recipe for the ViT (class token kept and output)."""
    cfg = ConfigDict(tiny_segmentor_cfg(num_classes=4, test_cfg=test_cfg))
    cfg.backbone.update(with_cls_token=True, output_cls_token=output_cls_token)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def test_backbone_that_outputs_its_class_token():
    """``[map, cls_token]`` outputs: ATMHead takes the map; training, whole and
    slide inference give what the same model without the class token output
    gives."""
    torch.manual_seed(0)
    with_token = _cls_token_segmentor(True)
    without = _cls_token_segmentor(False)
    without.load_state_dict(with_token.state_dict())
    feats = with_token.extract_feat(torch.zeros(1, 3, 32, 32))
    assert isinstance(feats[0], list) and feats[0][1].shape == (1, 32)
    imgs = torch.randint(0, 255, (2, 3, 32, 32)).float()
    labels = torch.randint(0, 4, (2, 32, 32))
    assert torch.isfinite(_train_step(with_token, imgs, labels))
    with_token.eval()
    without.eval()
    img = torch.randint(0, 255, (3, 50, 70)).float()
    for test_cfg in (dict(mode='whole'), SLIDE):
        with_token.test_cfg = without.test_cfg = ConfigDict(test_cfg)
        got = predict_image(with_token, img).seg_logits.data
        want = predict_image(without, img).seg_logits.data
        assert got.shape == (4, 50, 70)
        torch.testing.assert_close(got, want)


def test_unknown_input_pairs_are_refused_with_their_shapes():
    tokens = torch.zeros(2, 12, 32)
    with pytest.raises(
            ValueError,
            match=r'ATMHead input 1 is \[tensor \(2, 12, 32\), tensor '
            r'\(2, 32\)\].*output_cls_token=True'):
        ATMHead.stage_tokens([tokens, torch.zeros(2, 32)], 1, 32)
    with pytest.raises(ValueError, match='class token of shape'):
        ATMHead.stage_tokens([torch.zeros(2, 32, 3, 4),
                              torch.zeros(2, 16)], 0, 32)
    tokens_out, grid = ATMHead.stage_tokens((tokens, torch.Size([3, 4])), 0,
                                            32)
    assert grid == (3, 4) and tokens_out.shape == (2, 12, 32)
    head = tiny_head(num_classes=3).eval()
    maps = feature_maps(batch=2)
    pairs = [[m, m.mean((2, 3))] for m in maps]
    torch.testing.assert_close(head(pairs)[1], head(maps)[1])


KMEANS = dict(type='KMeansCrossAttention')


def test_head_needs_every_layer_supervised():
    with pytest.raises(ValueError, match='per_layer'):
        tiny_head(cross_attn_cfg=KMEANS, num_layers=2)
    tiny_head(cross_attn_cfg=KMEANS, num_layers=1)  # cumulative is fine
