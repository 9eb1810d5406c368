"""MMSeg's inference APIs and the ATM mask pictures on the demo model.

The model is the demo config's, trained for a few steps here and saved with the
dataset's class names and palette, as ``mim train`` saves it.
"""
import os
import os.path as osp
import types

import cv2
import numpy as np
import pytest
import torch
from fixtures import DEMO_CONFIG, data_samples, save_shapes_checkpoint
from mmengine.config import Config
from mmseg.registry import MODELS

from mmseg_segvit import visualization
from mmseg_segvit.datasets import SegVitShapesDataset
from mmseg_segvit.datasets.shapes_generator import render_scene
from mmseg_segvit.tools import atm_masks

META = SegVitShapesDataset.METAINFO
SIZE = 128


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """A folder of three demo images (BGR PNG files)."""
    folder = tmp_path_factory.mktemp('images')
    for seed in range(3):
        img, _ = render_scene(1000 + seed, size=SIZE)
        cv2.imwrite(str(folder / f'scene{seed}.png'), img[..., ::-1])
    return str(folder)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """The demo model after three training steps, with dataset meta."""
    torch.manual_seed(0)
    cfg = Config.fromfile(DEMO_CONFIG)
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scenes = [render_scene(seed, size=SIZE) for seed in range(4)]
    imgs = [
        torch.from_numpy(i[..., ::-1].copy()).permute(2, 0, 1)
        for i, _ in scenes
    ]
    labels = torch.stack([torch.from_numpy(l).long() for _, l in scenes])
    for _ in range(3):
        data = model.data_preprocessor(
            dict(inputs=imgs, data_samples=data_samples(labels)),
            training=True)
        loss, _ = model.parse_losses(
            model.loss(data['inputs'], data['data_samples']))
        optim.zero_grad()
        loss.backward()
        optim.step()
    return save_shapes_checkpoint(
        model, str(tmp_path_factory.mktemp('ckpt') / 'demo.pth'))


def test_mmseg_inferencer_on_an_image_and_a_folder(checkpoint, images,
                                                   tmp_path):
    from mmseg.apis import MMSegInferencer
    inferencer = MMSegInferencer(
        model=DEMO_CONFIG, weights=checkpoint, device='cpu')
    assert list(inferencer.model.dataset_meta['classes']) == list(
        META['classes'])
    image = osp.join(images, 'scene0.png')
    out = inferencer(image, return_vis=True)
    assert out['predictions'].shape == (SIZE, SIZE)
    assert out['predictions'].max() < len(META['classes'])
    assert out['visualization'].shape == (SIZE, SIZE, 3)

    out = inferencer(images, out_dir=str(tmp_path), batch_size=2)
    assert len(out['predictions']) == 3
    assert sorted(os.listdir(tmp_path / 'vis')) == sorted(os.listdir(images))
    # MMSeg numbers the raw prediction files
    assert len(os.listdir(tmp_path / 'pred')) == 3
    drawn = cv2.imread(str(tmp_path / 'vis' / 'scene1.png'))
    assert drawn.shape == (SIZE, SIZE, 3)


def test_image_demo_flow(checkpoint, images, tmp_path):
    """What MMSeg's demo/image_demo.py does, on CPU."""
    from mmengine.model import revert_sync_batchnorm
    from mmseg.apis import inference_model, init_model, show_result_pyplot
    model = revert_sync_batchnorm(
        init_model(DEMO_CONFIG, checkpoint, device='cpu'))
    image = osp.join(images, 'scene2.png')
    result = inference_model(model, image)
    assert result.pred_sem_seg.data.shape == (1, SIZE, SIZE)
    assert result.seg_logits.data.shape == (len(META['classes']), SIZE, SIZE)
    out_file = str(tmp_path / 'result.jpg')
    drawn = show_result_pyplot(
        model,
        image,
        result,
        title='demo',
        opacity=0.5,
        draw_gt=False,
        show=False,
        out_file=out_file)
    assert drawn.shape == (SIZE, SIZE, 3)
    assert cv2.imread(out_file).shape == (SIZE, SIZE, 3)
    # a batch of images (paths) gives a list
    results = inference_model(
        model, [osp.join(images, f) for f in sorted(os.listdir(images))])
    assert len(results) == 3


def test_atm_outputs_reproduce_the_model_prediction(checkpoint, images):
    from mmseg.apis import inference_model, init_model
    model = init_model(DEMO_CONFIG, checkpoint, device='cpu')
    image = cv2.imread(osp.join(images, 'scene0.png'))
    outputs = visualization.atm_outputs(model, image)
    num_classes = len(META['classes'])
    assert outputs.cls_prob.shape == (3, num_classes, num_classes + 1)
    assert outputs.masks.shape == (3, num_classes, SIZE, SIZE)
    assert 0 <= outputs.masks.min() and outputs.masks.max() <= 1
    torch.testing.assert_close(
        outputs.cls_prob.sum(-1), torch.ones(3, num_classes))
    # whole inference at the image size: the same scores as the model's
    result = inference_model(model, image)
    torch.testing.assert_close(
        outputs.scores, result.seg_logits.data, rtol=1e-4, atol=1e-5)


def test_rank_classes_by_area_then_probability():
    pred = np.array([[2, 2, 2], [2, 0, 0], [255, 255, 255]])
    cls_prob = torch.full((4, 5), 0.1)
    cls_prob[3, 3] = 0.9
    cls_prob[1, 1] = 0.5
    assert visualization.rank_classes(pred, cls_prob, 4) == [2, 0, 3, 1]
    assert visualization.rank_classes(pred, cls_prob, 2) == [2, 0]
    assert visualization.rank_classes(pred, cls_prob, 10) == [2, 0, 3, 1]
    with pytest.raises(ValueError, match='topk'):
        visualization.rank_classes(pred, cls_prob, 0)


def test_atm_masks_command_on_an_image_and_a_folder(checkpoint, images,
                                                    tmp_path):
    image = osp.join(images, 'scene1.png')
    atm_masks.main(
        [DEMO_CONFIG, checkpoint, image,
         str(tmp_path / 'one'), '--topk', '2'])
    assert sorted(os.listdir(
        tmp_path / 'one')) == ['scene1_atm_masks.png', 'scene1_pred.png']
    pred = cv2.imread(str(tmp_path / 'one' / 'scene1_pred.png'))
    # image and prediction side by side, then the legend
    assert pred.shape[1] > 2 * pred.shape[0] > 2 * SIZE
    small = cv2.imread(str(tmp_path / 'one' / 'scene1_atm_masks.png'))
    # 3 stage outputs + the class score: wider than tall for 2 rows
    assert small.shape[1] > small.shape[0] and small.std() > 10

    atm_masks.main([
        DEMO_CONFIG, checkpoint, images,
        str(tmp_path / 'all'), '--topk', '4'
    ])
    written = sorted(os.listdir(tmp_path / 'all'))
    assert len(written) == 6
    big = cv2.imread(str(tmp_path / 'all' / 'scene1_atm_masks.png'))
    assert big.shape[0] > 1.5 * small.shape[0]  # two more rows


def test_atm_masks_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no image'):
        atm_masks.list_images(str(tmp_path / 'missing.png'))
    with pytest.raises(FileNotFoundError, match='no image files'):
        atm_masks.list_images(str(tmp_path))
    model = types.SimpleNamespace(decode_head=torch.nn.Identity())
    with pytest.raises(TypeError, match='not an ATMHead'):
        visualization.atm_outputs(model, np.zeros((8, 8, 3), np.uint8))


def test_atm_masks_names_classes_from_the_config_without_checkpoint_meta(
        checkpoint, tmp_path):
    """A bare state dict (no meta): the config's dataset names the classes
    (mmseg's init_model stopped with KeyError: 'meta')."""
    from mmseg_segvit.apis import init_model
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    bare = str(tmp_path / 'bare.pth')
    torch.save(state['state_dict'], bare)
    model = init_model(DEMO_CONFIG, bare, device='cpu')
    assert list(model.dataset_meta['classes']) == list(META['classes'])
    img, _ = render_scene(7, size=SIZE)
    path = str(tmp_path / 'x.png')
    cv2.imwrite(path, img[..., ::-1])
    atm_masks.main([DEMO_CONFIG, bare, path, str(tmp_path / 'out')])
    assert osp.isfile(tmp_path / 'out' / 'x_atm_masks.png')
