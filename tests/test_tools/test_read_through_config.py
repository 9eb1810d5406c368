"""Our image tools read images through the config's test pipeline, as
``inference_model`` does, and draw the image the model saw."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from fixtures import save_shapes_checkpoint, tiny_segmentor_cfg
from mmengine.config import Config
from mmseg.registry import MODELS

from mmseg_segvit import visualization
from mmseg_segvit.tools import atm_masks, visualize_demo
from mmseg_segvit.utils import displayable, load_for_test

# How the config reads images: (LoadImageFromFile settings, channels)
READERS = {
    'grayscale': (dict(color_type='grayscale'), 1),
    'unchanged-rgba': (dict(color_type='unchanged'), 4),
}


def _config(tmp_path, reader, data_root):
    load, channels = READERS[reader]
    model = tiny_segmentor_cfg(num_classes=12, size=(32, 32))
    model['data_preprocessor'].update(
        mean=[127.5] * channels, std=[127.5] * channels, bgr_to_rgb=False)
    model['backbone']['in_channels'] = channels
    pipeline = [
        dict(type='LoadImageFromFile', **load),
        dict(type='Resize', scale=(48, 48), keep_ratio=True),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs')
    ]
    cfg = Config(
        dict(
            default_scope='mmseg',
            model=model,
            test_pipeline=pipeline,
            test_dataloader=dict(
                batch_size=1,
                dataset=dict(
                    type='SegVitShapesDataset',
                    data_root=data_root,
                    data_prefix=dict(
                        img_path='img_dir/val', seg_map_path='ann_dir/val'),
                    pipeline=pipeline))))
    path = str(tmp_path / f'{reader}.py')
    cfg.dump(path)
    return path


@pytest.fixture(params=sorted(READERS))
def reader_model(request, tmp_path, demo_data_root):
    """A config reading images its own way and a checkpoint for it."""
    config = _config(tmp_path, request.param, demo_data_root)
    model = MODELS.build(Config.fromfile(config).model)
    model.init_weights()
    ckpt = save_shapes_checkpoint(model, str(tmp_path / 'model.pth'))
    return request.param, config, ckpt


def _red_image(tmp_path, channels=3):
    img = np.zeros((40, 56, channels), np.uint8)
    img[..., 2] = 255  # red in BGR(A)
    if channels == 4:
        img[..., 3] = 255
    path = str(tmp_path / 'red.png')
    cv2.imwrite(path, img)
    return path


def test_atm_masks_reads_the_image_as_the_config_does(reader_model, tmp_path):
    """A red picture seen by a grayscale (or 4-channel) model: the tool runs,
    its scores are inference_model's, and the prediction picture shows the
    image the model saw."""
    from mmseg.apis import inference_model, init_model
    reader, config, ckpt = reader_model
    image = _red_image(tmp_path, 4 if reader == 'unchanged-rgba' else 3)
    out = tmp_path / 'out'
    atm_masks.main([config, ckpt, image, str(out), '--topk', '2'])
    pred = cv2.imread(str(out / 'red_pred.png'))[..., ::-1]  # RGB
    if reader == 'grayscale':  # luminance of pure red, in gray
        seen = cv2.cvtColor(cv2.imread(image), cv2.COLOR_BGR2GRAY)[0, 0]
        seen = [seen] * 3
    else:
        seen = [255, 0, 0]
    # the image panel: at least the image's pixels in what the model saw
    # (nearest-neighbour drawing keeps the colour exactly)
    assert (pred == seen).all(-1).sum() >= 40 * 56
    other = [255, 0, 0] if reader == 'grayscale' else [76, 76, 76]
    assert (pred == other).all(-1).sum() < 40 * 56
    assert osp.getsize(out / 'red_atm_masks.png') > 1000

    model = init_model(config, ckpt, device='cpu')
    outputs = visualization.atm_outputs(model, image)
    result = inference_model(model, image)
    assert outputs.scores.shape == (12, 40, 56)
    torch.testing.assert_close(
        outputs.scores, result.seg_logits.data, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('reader_model', ['grayscale'], indirect=True)
def test_visualize_demo_reads_the_test_pipeline(reader_model, tmp_path):
    """The demo's colour images through a grayscale model's config: the
    picture's image column is what the model saw, in gray."""
    from mmseg.apis import init_model
    from mmseg.registry import DATASETS
    _, config, ckpt = reader_model
    out = str(tmp_path / 'demo.png')
    visualize_demo.main([config, ckpt, out, '--num', '2'])
    picture = cv2.imread(out)
    assert picture.shape[0] > 2 * 128 and picture.shape[1] > 3 * 128
    # the rows the picture draws: image | ground truth | prediction
    model = init_model(config, ckpt, device='cpu')
    rows = visualization.demo_rows(
        model, DATASETS.build(model.cfg.test_dataloader.dataset), 2)
    assert len(rows) == 2
    for image, gt, pred in rows:
        assert image.shape == (128, 128, 3)
        assert gt.shape == pred.shape == (128, 128)
        assert (image[..., 0] == image[..., 1]).all()
        assert (image[..., 1] == image[..., 2]).all()
        assert image.std() > 10


def test_load_for_test_keeps_the_decoded_image(tmp_path):
    path = _red_image(tmp_path)
    cfg = Config(
        dict(test_pipeline=[
            dict(type='LoadImageFromFile', color_type='grayscale'),
            dict(type='Resize', scale=(20, 28), keep_ratio=False),
            dict(type='PackSegInputs')
        ]))
    data, loaded = load_for_test(cfg, path)
    assert loaded.shape == (40, 56)  # before the resize
    assert data['inputs'][0].shape == (1, 28, 20)
    assert data['data_samples'][0].ori_shape == (40, 56)
    # an array goes through LoadImageFromNDArray, as inference_model does
    data, loaded = load_for_test(cfg, cv2.imread(path))
    assert loaded.shape == (40, 56, 3)
    assert displayable(loaded)[0, 0].tolist() == [255, 0, 0]
    gray16 = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    shown = displayable(gray16)
    assert shown.shape == (3, 4, 3) and shown.max() == 255
    with pytest.raises(ValueError, match='start with an image loading'):
        load_for_test(
            Config(dict(test_pipeline=[dict(type='PackSegInputs')])), path)
