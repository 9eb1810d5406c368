import os
import os.path as osp

import pytest
import torch
from fixtures import REPO
from mmengine.config import Config

from mmseg_segvit.utils.configs import (CONFIG_DIR, build_model, config_dir,
                                        load_config)

DEMO = osp.join(REPO, 'configs', 'segvit',
                'segvit_vit-t8_1xb8-500iter_shapes-128x128.py')


def _tree(root, *paths):
    for path in paths:
        path = osp.join(root, path)
        if path.endswith('/'):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(osp.dirname(path), exist_ok=True)
            open(path, 'w').close()


def test_this_checkout_uses_its_configs_folder():
    assert config_dir() == osp.join(REPO, 'configs')
    assert CONFIG_DIR == osp.join(REPO, 'configs', 'segvit')
    assert osp.isfile(DEMO)


def test_source_checkout_layout(tmp_path):
    _tree(tmp_path, 'setup.py', 'configs/segvit/', 'mmseg_segvit/')
    assert config_dir(str(tmp_path / 'mmseg_segvit')) == str(tmp_path /
                                                             'configs')


def test_installed_wheel_layout(tmp_path):
    # site-packages: no setup.py; mim's copy under the package; another
    # distribution's top-level 'configs' folder must not be taken
    _tree(tmp_path, 'configs/segvit/', 'mmseg_segvit/.mim/configs/segvit/')
    found = config_dir(str(tmp_path / 'mmseg_segvit'))
    assert found == str(tmp_path / 'mmseg_segvit' / '.mim' / 'configs')
    assert osp.isdir(osp.join(found, 'segvit'))


def test_nothing_found_names_the_installed_location(tmp_path):
    _tree(tmp_path, 'mmseg_segvit/')
    assert config_dir(str(tmp_path / 'mmseg_segvit')) == str(
        tmp_path / 'mmseg_segvit' / '.mim' / 'configs')


def test_load_config_merges_options_and_returns_copies():
    cfg = load_config(DEMO, {'model.decode_head.num_layers': 1})
    assert isinstance(cfg, Config)
    assert cfg.model.decode_head.num_layers == 1
    cfg.model.decode_head.num_classes = 99
    again = load_config(DEMO)
    assert again.model.decode_head.num_layers == 2
    assert again.model.decode_head.num_classes != 99


@pytest.mark.parametrize('device', ['meta', 'cpu'])
def test_build_model_without_weights(device):
    model = build_model(DEMO, device=device)
    assert {p.device.type for p in model.parameters()} == {device}
    assert type(model.decode_head).__name__ == 'ATMHead'
    if device == 'cpu':
        model.eval()
        with torch.no_grad():
            cls_logits, masks = model(torch.randn(1, 3, 64, 64), mode='tensor')
        # 3 stages; 12 classes + "no object"; masks on the 8x8 patch grid
        assert cls_logits.shape == (3, 1, 12, 13)
        assert masks.shape == (3, 1, 12, 8, 8)
