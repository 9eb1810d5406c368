"""Odd inputs: sizes off the patch grid, mixed sizes, extreme class counts,
degenerate labels; property-based checks of ATMHead's shapes."""
import pytest
import torch
from fixtures import (data_samples, feature_maps, predict_image, tiny_head,
                      tiny_segmentor)
from hypothesis import given, settings
from hypothesis import strategies as st
from mmengine.config import ConfigDict


def _train_step(model, imgs, labels):
    """One forward/backward through the data preprocessor; returns losses."""
    samples = data_samples(labels) if isinstance(labels, torch.Tensor) \
        else [data_samples(label[None])[0] for label in labels]
    data = model.data_preprocessor(
        dict(inputs=list(imgs), data_samples=samples), training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    loss, _ = model.parse_losses(losses)
    loss.backward()
    return loss, losses


def _grads_finite(model):
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(grads) and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize('size', [(36, 53), (64, 40), (17, 90), (8, 8)])
def test_whole_inference_off_the_patch_grid(size):
    model = tiny_segmentor(num_classes=5).eval()
    out = predict_image(model, torch.randint(0, 255, (3, *size)).float())
    assert out.seg_logits.data.shape == (5, *size)
    assert out.pred_sem_seg.data.shape == (1, *size)
    assert torch.isfinite(out.seg_logits.data).all()
    assert 0 <= out.pred_sem_seg.data.min()
    assert out.pred_sem_seg.data.max() < 5


@pytest.mark.parametrize('size', [(50, 70), (70, 33), (20, 28)])
def test_slide_inference_non_square_and_smaller_than_the_crop(size):
    model = tiny_segmentor(
        num_classes=4,
        test_cfg=dict(mode='slide', crop_size=(32, 32),
                      stride=(24, 24))).eval()
    img = torch.randint(0, 255, (3, *size)).float()
    out = predict_image(model, img)
    assert out.seg_logits.data.shape == (4, *size)
    assert torch.isfinite(out.seg_logits.data).all()
    # Scores are probability-weighted sigmoids: in [0, 1] after averaging.
    assert out.seg_logits.data.min() >= 0
    assert out.seg_logits.data.max() <= 1


def test_slide_with_one_window_equals_whole_off_the_patch_grid():
    model = tiny_segmentor(num_classes=3).eval()
    img = torch.randint(0, 255, (3, 37, 51)).float()
    whole = predict_image(model, img).seg_logits.data
    model.test_cfg = ConfigDict(
        mode='slide', crop_size=(40, 56), stride=(40, 56))
    slide = predict_image(model, img).seg_logits.data
    torch.testing.assert_close(slide, whole, rtol=1e-4, atol=1e-5)


def test_training_batch_of_mixed_size_images():
    """The preprocessor pads each image (label with 255) to the crop."""
    model = tiny_segmentor(num_classes=5, size=(48, 48))
    sizes = [(30, 45), (48, 32), (48, 48)]
    imgs = [torch.randint(0, 255, (3, *s)).float() for s in sizes]
    labels = [torch.randint(0, 5, s) for s in sizes]
    loss, losses = _train_step(model, imgs, labels)
    assert torch.isfinite(loss)
    assert _grads_finite(model)


@pytest.mark.parametrize('num_classes', [1, 1000])
def test_extreme_class_counts_train_and_infer(num_classes):
    # one stage, one layer: self-attention over 1000 queries is the cost
    model = tiny_segmentor(
        num_classes=num_classes,
        use_stages=1,
        num_layers=1,
        in_index=[2],
        loss_decode=dict(type='ATMLoss'))
    imgs = torch.randint(0, 255, (2, 3, 32, 32)).float()
    # a few classes, among them the first and the last
    classes = torch.tensor([0, num_classes // 2, num_classes - 1])
    labels = classes[torch.randint(0, 3, (2, 32, 32))]
    labels[0, :5] = 255
    loss, losses = _train_step(model, imgs, labels)
    assert torch.isfinite(loss) and _grads_finite(model)
    model.eval()
    out = predict_image(model, imgs[0, :, :, :27])
    assert out.seg_logits.data.shape == (num_classes, 32, 27)
    pred = out.pred_sem_seg.data
    assert pred.shape == (1, 32, 27)
    assert 0 <= pred.min() and pred.max() < num_classes


def test_one_class_predicts_that_class():
    """One channel is binary to MMSeg; ATMHead keeps label 0 (argmax)."""
    model = tiny_segmentor(num_classes=1).eval()
    out = predict_image(model, torch.randint(0, 255, (3, 24, 40)).float())
    assert (out.pred_sem_seg.data == 0).all()


@pytest.mark.parametrize('case', ['all_ignore', 'single_class', 'mixed'])
def test_degenerate_labels_give_finite_losses_and_gradients(case):
    model = tiny_segmentor(num_classes=6)
    imgs = torch.randint(0, 255, (2, 3, 32, 32)).float()
    if case == 'all_ignore':  # every class absent
        labels = torch.full((2, 32, 32), 255)
    elif case == 'single_class':
        labels = torch.full((2, 32, 32), 4)
    else:  # one image without labels, one with a single class
        labels = torch.full((2, 32, 32), 255)
        labels[1] = 2
    loss, losses = _train_step(model, imgs, labels)
    assert torch.isfinite(loss)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert _grads_finite(model)
    if case == 'all_ignore':
        # no present class: no mask loss, all queries target "no object"
        assert losses['decode.loss_mask'].item() == 0
        assert losses['decode.loss_dice'].item() == 0
        assert losses['decode.loss_ce'].item() > 0


@settings(max_examples=10, deadline=None)
@given(
    num_classes=st.integers(1, 40),
    use_stages=st.integers(1, 3),
    batch=st.integers(1, 2),
    deep=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    factor=st.integers(1, 2),
    out_size=st.tuples(st.integers(1, 40), st.integers(1, 40)))
def test_atm_head_shapes_property(num_classes, use_stages, batch, deep, factor,
                                  out_size):
    """Any grids (deepest first, shallower ones up to 2x larger) and class
    count: outputs have the right shapes, are finite and predictions cover
    the requested size."""
    head = tiny_head(num_classes=num_classes, use_stages=use_stages).eval()
    grids = [(deep[0] * factor**i, deep[1] * factor**i)
             for i in range(use_stages)][::-1]  # shallow -> deep inputs
    with torch.no_grad():
        cls, masks = head(feature_maps(batch=batch, grids=grids))
        assert cls.shape == (use_stages, batch, num_classes, num_classes + 1)
        assert masks.shape == (use_stages, batch, num_classes, *grids[0])
        assert torch.isfinite(cls).all() and torch.isfinite(masks).all()
        metas = [dict(img_shape=out_size, pad_shape=out_size)] * batch
        logits = head.predict_by_feat((cls, masks), metas)
    assert logits.shape == (batch, num_classes, *out_size)
    assert torch.isfinite(logits).all()
    assert logits.min() >= 0 and logits.max() <= 1


def test_inputs_of_different_batch_sizes_are_refused():
    head = tiny_head()
    maps = feature_maps(batch=2)
    maps[1] = maps[1][:1]
    with pytest.raises(ValueError, match=r'batches of \[2, 1, 2\] images'):
        head(maps)


@pytest.mark.parametrize(
    'label_sizes',
    [
        [(64, 64), (64, 64)],  # every label twice the image: stretched
        [(32, 32), (30, 32)],  # one label short: failed inside torch.stack
    ])
def test_labels_of_another_size_than_their_image_are_refused(label_sizes):
    """A label map must have the size of its (padded) image."""
    model = tiny_segmentor(num_classes=5, size=(32, 32))
    imgs = [torch.randint(0, 255, (3, 32, 32)).float() for _ in label_sizes]
    labels = [torch.randint(0, 5, size) for size in label_sizes]
    bad = next(i for i, s in enumerate(label_sizes) if s != (32, 32))
    h, w = label_sizes[bad]
    with pytest.raises(
            ValueError,
            match=rf'label map of training sample '
            rf'{bad} is {h}x{w} but its image is 32x32'):
        _train_step(model, imgs, labels)


def test_padded_labels_of_smaller_images_are_accepted():
    """The preprocessor pads image and label alike (``padding_size``)."""
    model = tiny_segmentor(num_classes=5, size=(32, 32))
    sizes = [(20, 32), (32, 17)]
    imgs = [torch.randint(0, 255, (3, *s)).float() for s in sizes]
    loss, _ = _train_step(model, imgs, [torch.randint(0, 5, s) for s in sizes])
    assert torch.isfinite(loss)


def test_a_colour_label_map_is_refused_as_such_not_as_a_pairing_error():
    """PackSegInputs keeps an (H, W, 3) label as a (H, W, 3) tensor; the error
    names its channels, not another size than its image."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    model = tiny_segmentor(num_classes=5, size=(32, 32))
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.randint(0, 5, (32, 32, 3)))
    sample.set_metainfo(
        dict(
            img_shape=(32, 32),
            ori_shape=(32, 32),
            seg_map_path='ann/a.png',
            img_path='img/a.png'))
    data = model.data_preprocessor(
        dict(inputs=[torch.zeros(3, 32, 32)], data_samples=[sample]),
        training=True)
    with pytest.raises(
            ValueError, match=r'ann/a.png\) has 3 channels '
            r'\(a colour image') as err:
        model.loss(data['inputs'], data['data_samples'])
    assert 'but its image is' not in str(err.value)
