"""The k-means configs are their softmax configs with another head."""
import os.path as osp

import pytest
from mmengine.config import Config

from fixtures import REPO


@pytest.mark.parametrize('pair', [
    ('segvit_vit-t8_1xb8-500iter_shapes-128x128',
     'segvit-kmeans_vit-t8_1xb8-500iter_shapes-128x128', 6),
    ('segvit_vit-b16_8xb2-160k_ade20k-512x512',
     'segvit-kmeans_vit-b16_8xb2-160k_ade20k-512x512', 9),
])
def test_kmeans_configs_differ_from_softmax_only_in_the_head(pair):
    softmax_name, kmeans_name, outputs = pair
    softmax = Config.fromfile(osp.join(REPO, 'configs', 'segvit',
                                       softmax_name + '.py'))
    kmeans = Config.fromfile(osp.join(REPO, 'configs', 'segvit',
                                      kmeans_name + '.py'))
    head = kmeans.model.decode_head
    assert head.cross_attn == 'kmeans' and head.mask_mode == 'per_layer'
    assert head.loss_decode.dec_layers == outputs
    assert head.use_stages * head.num_layers == outputs
    assert softmax.model.decode_head.get('cross_attn', 'softmax') == 'softmax'
    # same budget and recipe: only the head's three entries differ
    for key in ('cross_attn', 'mask_mode'):
        head.pop(key)
    head.loss_decode.dec_layers = softmax.model.decode_head.loss_decode.get(
        'dec_layers')
    assert kmeans.model.to_dict() == softmax.model.to_dict()
    for key in ('train_cfg', 'optim_wrapper', 'param_scheduler',
                'train_dataloader', 'randomness'):
        assert kmeans.get(key) == softmax.get(key), key
