"""Converted official checkpoints keep their class names and palette, so
``MMSegInferencer`` names and colours every class of every released model's
class count."""
import os.path as osp

import numpy as np
import pytest
import torch
from fixtures import NUMPY1, NUMPY2, REPO, rewrite_globals
from mmengine.config import Config
from official_checkpoints import official_checkpoint

from mmseg_segvit.checkpoints import (config_dataset_meta,
                                      converted_dataset_meta,
                                      load_weights_file)
from mmseg_segvit.tools import convert_official_segvit as tool

CONFIGS = osp.join(REPO, 'configs', 'segvit')
RELEASED = {  # class count: (config, mmseg dataset)
    150: ('segvit_vit-b16_8xb2-160k_ade20k-512x512.py', 'ADE20KDataset'),
    171: ('segvit_vit-l16_8xb2-80k_coco-stuff10k-512x512.py',
          'COCOStuffDataset'),
    60: ('segvit_vit-l16_4xb4-80k_pascal-context-480x480.py',
         'PascalContextDataset'),
    59: ('segvit_vit-l16_4xb4-80k_pascal-context-59-480x480.py',
         'PascalContextDataset59'),
}


def _tiny_config(tmp_path, num_classes):
    """The released config with the model of ``official_checkpoint``."""
    name, _ = RELEASED[num_classes]
    path = tmp_path / f'tiny_{num_classes}.py'
    path.write_text(
        f'_base_ = [{osp.join(CONFIGS, name)!r}]\n'
        'model = dict(\n'
        '    pretrained=None,\n'
        '    data_preprocessor=dict(size=(64, 64)),\n'
        '    backbone=dict(img_size=(64, 64), embed_dims=32, num_layers=4,\n'
        '                  num_heads=4, out_indices=[1, 2, 3],\n'
        '                  drop_path_rate=0.0),\n'
        '    decode_head=dict(in_channels=32, embed_dims=16, num_layers=2,\n'
        '                     num_heads=4),\n'
        "    test_cfg=dict(_delete_=True, mode='whole'))\n")
    return str(path)


def _official_meta(num_classes):
    rng = np.random.RandomState(num_classes)
    return dict(
        CLASSES=tuple(f'official class {i}' for i in range(num_classes)),
        PALETTE=rng.randint(0, 256, (num_classes, 3)).tolist(),
        mmcv_version='1.4.4',
        seed=np.int64(0))


def _official_file(tmp_path, num_classes, meta):
    """An official-layout file whose every pixel is the last class."""
    sd, _, _ = official_checkpoint(num_classes=num_classes)
    bias = sd['decode_head.class_embed.bias']
    bias.zero_()
    bias[num_classes - 1] = 20.0  # every query says "last class"
    path = str(tmp_path / f'official_{num_classes}.pth')
    torch.save(dict(state_dict=sd, meta=meta), path)
    return path


@pytest.mark.parametrize(
    'with_meta', [True, False], ids=['official-meta', 'no-meta'])
@pytest.mark.parametrize('num_classes', sorted(RELEASED))
def test_inferencer_names_and_colours_every_class(tmp_path, num_classes,
                                                  with_meta):
    from mmseg.apis import MMSegInferencer
    from mmseg.registry import DATASETS
    config = _tiny_config(tmp_path, num_classes)
    meta = _official_meta(num_classes) if with_meta else {}
    src = _official_file(tmp_path, num_classes, meta)
    dst = str(tmp_path / 'converted.pth')
    report = tool.convert_file(src, dst, config)
    if with_meta:
        want = dict(classes=meta['CLASSES'], palette=meta['PALETTE'])
        assert report['notes'][-1] == (
            f'dataset_meta: {num_classes} class names from the official '
            'file, palette from the official file')
    else:
        info = DATASETS.get(RELEASED[num_classes][1]).METAINFO
        want = dict(classes=info['classes'], palette=info['palette'])
    saved = load_weights_file(dst)['meta']['dataset_meta']
    assert list(saved['classes']) == list(want['classes'])
    assert [list(c)
            for c in saved['palette']] == [list(c) for c in want['palette']]

    inferencer = MMSegInferencer(model=config, weights=dst, device='cpu')
    assert list(inferencer.model.dataset_meta['classes']) == list(
        want['classes'])
    image = np.full((64, 64, 3), 100, np.uint8)
    out = inferencer(image, return_vis=True)
    last = num_classes - 1
    assert (out['predictions'] == last).all()
    # the picture: the image blended with the last class's colour
    # (MMSegInferencer's opacity 0.8), but for the class name drawn on it
    colour = np.asarray(want['palette'][last], np.float32)
    expected = 0.2 * 100 + 0.8 * colour
    vis = out['visualization'].astype(np.float32)
    close = (np.abs(vis - expected) <= 2).all(-1)
    assert close.mean() > 0.8
    assert inferencer.visualizer.dataset_meta['classes'][last] == \
        want['classes'][last]


def test_dataset_meta_sources():
    cfg = Config.fromfile(osp.join(CONFIGS, RELEASED[171][0]))
    from_config = config_dataset_meta(cfg)
    assert len(from_config['classes']) == len(from_config['palette']) == 171
    official = _official_meta(171)
    # names from the file, palette from the config when the file has none
    meta, note = converted_dataset_meta(
        dict(CLASSES=official['CLASSES']), cfg, 171)
    assert meta['classes'] == official['CLASSES']
    assert meta['palette'] == from_config['palette']
    assert note.endswith("palette from the config's dataset")
    # names of another class count are not used
    meta, _ = converted_dataset_meta(dict(CLASSES=('a', 'b')), cfg, 171)
    assert meta['classes'] == from_config['classes']
    # a config without class names: numbered names, a fixed palette
    bare = Config(
        dict(test_dataloader=dict(dataset=dict(type='BaseSegDataset'))))
    assert config_dataset_meta(bare) is None
    meta, note = converted_dataset_meta({}, bare, 3)
    assert meta['classes'] == ('class 0', 'class 1', 'class 2')
    assert len(meta['palette']) == 3 and 'generated' in note
    assert converted_dataset_meta({}, bare, 3)[0] == meta
    # the config's metainfo wins over the dataset class's
    custom = Config(
        dict(
            test_dataloader=dict(
                dataset=dict(
                    type='RepeatDataset',
                    times=2,
                    dataset=dict(
                        type='ADE20KDataset',
                        metainfo=dict(
                            classes=('x',
                                     'y'), palette=[[1, 2, 3], [4, 5, 6]]))))))
    assert config_dataset_meta(custom) == dict(
        classes=('x', 'y'), palette=[[1, 2, 3], [4, 5, 6]])


def test_backbone_only_conversion_has_no_class_names(tmp_path):
    config = _tiny_config(tmp_path, 150)
    src = _official_file(tmp_path, 150, _official_meta(150))
    dst = str(tmp_path / 'backbone.pth')
    tool.convert_file(src, dst, config, backbone_only=True)
    assert 'dataset_meta' not in load_weights_file(dst)['meta']


def test_official_file_written_under_numpy1_converts(tmp_path):
    """Released files come from numpy 1.x (numpy.core names in meta)."""
    config = _tiny_config(tmp_path, 59)
    src = _official_file(tmp_path, 59, _official_meta(59))
    old_numpy = str(tmp_path / 'np1.pth')
    rewrite_globals(src, old_numpy, NUMPY2, NUMPY1)
    dst = str(tmp_path / 'converted.pth')
    tool.main([old_numpy, dst, '--config', config])
    assert len(load_weights_file(dst)['meta']['dataset_meta']['classes']) \
        == 59
