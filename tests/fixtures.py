"""Builders of tiny models and inputs for the tests."""
from typing import Sequence, Tuple

import torch
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData


def tiny_head(num_classes: int = 5,
              in_channels=32,
              embed_dims: int = 32,
              use_stages: int = 3,
              num_layers: int = 2,
              **kwargs):
    cfg = dict(
        type='ATMHead',
        in_channels=in_channels,
        embed_dims=embed_dims,
        num_heads=4,
        num_layers=num_layers,
        use_stages=use_stages,
        num_classes=num_classes,
        **kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def feature_maps(batch: int = 2,
                 channels=32,
                 grids: Sequence[Tuple[int, int]] = ((4, 6), ) * 3):
    if isinstance(channels, int):
        channels = [channels] * len(grids)
    return [torch.randn(batch, c, h, w) for c, (h, w) in zip(channels, grids)]


def data_samples(labels: torch.Tensor):
    """SegDataSamples from (B, H, W) labels."""
    samples = []
    for label in labels:
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=label[None].long())
        h, w = label.shape
        sample.set_metainfo(dict(img_shape=(h, w), pad_shape=(h, w),
                                 ori_shape=(h, w)))
        samples.append(sample)
    return samples


def meta_head(head_cfg: dict):
    """The decode head a config builds, on the meta device (no memory, no
    initialisation): its settings and its bound loss, at any size."""
    with torch.device('meta'):
        return MODELS.build(dict(head_cfg))
