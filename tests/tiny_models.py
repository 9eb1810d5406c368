"""A tiny SegViT segmentor (ViT + ATMHead) built from a config dict."""
from typing import Optional, Tuple

from mmengine.config import ConfigDict
from mmseg.registry import MODELS


def tiny_segmentor_cfg(num_classes: int = 5,
                       size: Tuple[int, int] = (32, 32),
                       patch_size: int = 8,
                       test_cfg: Optional[dict] = None,
                       dropout: float = 0.1,
                       **head_kwargs) -> dict:
    """Config of a 3-layer, 32-dim ViT with patch ``patch_size`` + ATMHead.

    The structure is that of the shipped configs (EncoderDecoder, mmseg's
    VisionTransformer, features of every layer, ATMHead with 3 stages).
    """
    head = dict(
        type='ATMHead',
        in_channels=32,
        embed_dims=32,
        num_heads=4,
        num_layers=2,
        use_stages=3,
        num_classes=num_classes,
        dropout=dropout,
        loss_decode=dict(
            type='ATMLoss', num_classes=num_classes, dec_layers=3))
    head.update(head_kwargs)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[127.5] * 3,
            std=[127.5] * 3,
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size=size),
        backbone=dict(
            type='VisionTransformer',
            img_size=size,
            patch_size=patch_size,
            in_channels=3,
            embed_dims=32,
            num_layers=3,
            num_heads=2,
            drop_path_rate=0.1,
            out_indices=[0, 1, 2],
            final_norm=False,
            norm_cfg=dict(type='LN', eps=1e-6),
            with_cls_token=False,
            interpolate_mode='bicubic'),
        decode_head=head,
        train_cfg=dict(),
        test_cfg=test_cfg or dict(mode='whole'))


def tiny_segmentor(*args, **kwargs):
    """Build and initialise :func:`tiny_segmentor_cfg`."""
    model = MODELS.build(ConfigDict(tiny_segmentor_cfg(*args, **kwargs)))
    model.init_weights()
    return model
