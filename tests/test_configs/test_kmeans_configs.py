"""The k-means configs are their softmax configs with another head."""
import os.path as osp

import pytest
from fixtures import REPO, meta_head
from mmengine.config import Config


@pytest.mark.parametrize('pair', [
    ('segvit_vit-t8_1xb8-500iter_shapes-128x128',
     'segvit-kmeans_vit-t8_1xb8-500iter_shapes-128x128', 6),
    ('segvit_vit-b16_8xb2-160k_ade20k-512x512',
     'segvit-kmeans_vit-b16_8xb2-160k_ade20k-512x512', 9),
])
def test_kmeans_configs_differ_from_softmax_only_in_the_head(pair):
    softmax_name, kmeans_name, outputs = pair
    softmax = Config.fromfile(
        osp.join(REPO, 'configs', 'segvit', softmax_name + '.py'))
    kmeans = Config.fromfile(
        osp.join(REPO, 'configs', 'segvit', kmeans_name + '.py'))
    head = kmeans.model.decode_head
    assert head.cross_attn_cfg == dict(type='KMeansCrossAttention')
    assert head.mask_mode == 'per_layer'
    assert meta_head(head).num_outputs == outputs
    assert head.use_stages * head.num_layers == outputs
    assert 'cross_attn_cfg' not in softmax.model.decode_head  # softmax
    # same budget and recipe: only the head's two entries differ
    for key in ('cross_attn_cfg', 'mask_mode'):
        head.pop(key)
    assert kmeans.model.to_dict() == softmax.model.to_dict()
    for key in ('train_cfg', 'optim_wrapper', 'param_scheduler',
                'train_dataloader', 'randomness'):
        assert kmeans.get(key) == softmax.get(key), key
