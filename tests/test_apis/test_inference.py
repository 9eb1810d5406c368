"""Every checkpoint layout users save loads in init_model, the inferencer and
the tools, with class names from the config's dataset when the file has none;
the inferencer names its outputs after their inputs and takes batches of mixed
image sizes."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from fixtures import DEMO_CONFIG
from mmengine.config import Config
from mmseg.registry import MODELS

from mmseg_segvit.apis import SegViTInferencer, init_model
from mmseg_segvit.datasets import SegVitShapesDataset
from mmseg_segvit.tools import atm_masks

CLASSES = list(SegVitShapesDataset.METAINFO['classes'])
NAMED = [f'mine {i}' for i in range(12)]


def _tiny_cfg():
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.model.backbone.update(
        embed_dims=32, num_layers=3, num_heads=2, out_indices=[0, 1, 2])
    cfg.model.decode_head.update(
        in_channels=32, embed_dims=32, num_heads=4, num_layers=1)
    return cfg


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A tiny demo-structured model (random weights) and its config file."""
    cfg = _tiny_cfg()
    path = str(tmp_path_factory.mktemp('cfg') / 'tiny.py')
    cfg.dump(path)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model, path


def _layout(state_dict, layout):
    """The file content each tool or habit writes."""
    if layout == 'mmengine':
        return dict(
            state_dict=state_dict,
            meta=dict(
                iter=5,
                dataset_meta=dict(classes=NAMED, palette=[[1, 2, 3]] * 12)))
    if layout == 'mmseg0x':
        return dict(
            state_dict=state_dict,
            meta=dict(CLASSES=NAMED, PALETTE=[[1, 2, 3]] * 12))
    if layout == 'no_meta':
        return dict(state_dict=state_dict)
    if layout == 'meta_without_classes':
        return dict(state_dict=state_dict, meta=dict(iter=5, seed=0))
    if layout == 'wrong_class_count':
        return dict(
            state_dict=state_dict,
            meta=dict(dataset_meta=dict(classes=['a'] * 150)))
    if layout == 'bare':
        return dict(state_dict)
    if layout == 'model_key':
        return dict(model=state_dict)
    if layout == 'ddp':
        return {f'module.{k}': v for k, v in state_dict.items()}
    if layout == 'ema_only':
        ema = {f'module.{k}': v for k, v in state_dict.items()}
        ema['steps'] = torch.tensor(10)
        return dict(ema_state_dict=ema, meta=dict(iter=10))
    raise ValueError(layout)


LAYOUTS = [
    'mmengine', 'mmseg0x', 'no_meta', 'meta_without_classes',
    'wrong_class_count', 'bare', 'model_key', 'ddp', 'ema_only'
]


def _save(model, tmp_path, layout):
    path = str(tmp_path / f'{layout}.pth')
    torch.save(_layout(model.state_dict(), layout), path)
    return path


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize('layout', LAYOUTS)
def test_init_model_loads_every_layout(trained, tmp_path, layout):
    model, cfg = trained
    loaded = init_model(cfg, _save(model, tmp_path, layout), device='cpu')
    assert _same_weights(loaded, model)
    want = NAMED if layout in ('mmengine', 'mmseg0x') else CLASSES
    assert list(loaded.dataset_meta['classes']) == want
    assert len(loaded.dataset_meta['palette']) == 12


def test_init_model_reads_safetensors(trained, tmp_path):
    from safetensors.torch import save_file
    model, cfg = trained
    path = str(tmp_path / 'weights.safetensors')
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    loaded = init_model(cfg, path, device='cpu')
    assert _same_weights(loaded, model)
    assert list(loaded.dataset_meta['classes']) == CLASSES


@pytest.mark.parametrize('layout', ['bare', 'no_meta', 'ddp'])
def test_inferencer_names_classes_after_the_config(trained, tmp_path, layout):
    model, cfg = trained
    inferencer = SegViTInferencer(
        model=cfg, weights=_save(model, tmp_path, layout), device='cpu')
    assert list(inferencer.model.dataset_meta['classes']) == CLASSES
    assert _same_weights(inferencer.model, model)


def test_inferencer_without_weights_names_classes_after_the_config(trained):
    _, cfg = trained
    with pytest.warns(UserWarning, match='randomly initialised'):
        inferencer = SegViTInferencer(model=cfg, device='cpu')
    assert list(inferencer.model.dataset_meta['classes']) == CLASSES


def _mixed_folder(root):
    rng = np.random.RandomState(0)
    sizes = {
        'b_wide': (48, 80),
        'a_square': (64, 64),
        'c_tall': (80, 40),
        'd_square': (64, 64)
    }
    os.makedirs(root, exist_ok=True)
    for name, (h, w) in sizes.items():
        cv2.imwrite(
            osp.join(root, f'{name}.png'),
            rng.randint(0, 256, (h, w, 3), dtype=np.uint8))
    return sizes


def test_folder_inference_names_outputs_and_batches_mixed_sizes(
        trained, tmp_path):
    model, cfg = trained
    folder = str(tmp_path / 'images')
    sizes = _mixed_folder(folder)
    weights = _save(model, tmp_path, 'bare')
    inferencer = SegViTInferencer(model=cfg, weights=weights, device='cpu')
    out = inferencer(folder, out_dir=str(tmp_path / 'out'), batch_size=3)
    assert sorted(os.listdir(tmp_path / 'out' / 'pred')) == sorted(
        f'{name}.png' for name in sizes)
    for name, size in sizes.items():
        written = cv2.imread(
            str(tmp_path / 'out' / 'pred' / f'{name}.png'),
            cv2.IMREAD_UNCHANGED)
        assert written.shape == size
        single = SegViTInferencer(
            model=cfg, weights=weights, device='cpu')(
                osp.join(folder, f'{name}.png'))
        assert np.array_equal(written, single['predictions'])
    assert len(out['predictions']) == 4


def test_atm_masks_takes_a_bare_state_dict(trained, tmp_path):
    """mmseg's init_model stopped with KeyError: 'meta' here."""
    model, cfg = trained
    folder = str(tmp_path / 'images')
    _mixed_folder(folder)
    atm_masks.main([
        cfg,
        _save(model, tmp_path, 'bare'),
        osp.join(folder, 'c_tall.png'),
        str(tmp_path / 'out'), '--topk', '2'
    ])
    assert sorted(os.listdir(
        tmp_path / 'out')) == ['c_tall_atm_masks.png', 'c_tall_pred.png']


def test_label_pngs_of_more_than_256_classes_keep_their_indices(tmp_path):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample(metainfo=dict(img_path='/x/scene.jpg'))
    label = torch.tensor([[0, 300], [170, 255]])
    sample.pred_sem_seg = PixelData(data=label[None])
    inferencer = SegViTInferencer.__new__(SegViTInferencer)
    inferencer.num_pred_imgs = 0
    inferencer.postprocess([sample], None, pred_out_dir=str(tmp_path))
    written = cv2.imread(str(tmp_path / 'scene.png'), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16
    assert written.tolist() == label.tolist()
