# ConvNeXt-T + ATMHead without mmpretrain: the stock ConvNeXt-T config with
# its backbone taken from timm (the same network, `convnext_tiny`) through
# MMSeg's TIMMBackbone. Set `checkpoint_path` to a local copy of timm's
# ImageNet weights (nothing is downloaded). timm's parameter names differ
# from mmpretrain's, so the stage-wise lr decay of the stock config is
# replaced by a plain AdamW with the head at lr x 10.
# The FCN auxiliary head reads stage 2 on its own and is kept.
_base_ = [
    'mmseg::convnext/'
    'convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py',
    '../../_base_/models/atm_head.py'
]
from mmseg_segvit.utils import clamped_resize_pipelines

custom_imports = dict(imports=['mmseg_segvit'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='TIMMBackbone',
        model_name='convnext_tiny',
        features_only=True,
        out_indices=(0, 1, 2, 3),
        pretrained=False,
        checkpoint_path='',
        drop_path_rate=0.4),
    decode_head=dict(
        _base_.atm_head, _delete_=True, in_channels=[192, 384, 768]))
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'decode_head': dict(lr_mult=10.0),
        'norm': dict(decay_mult=0.0)
    }),
    loss_scale='dynamic')
# MMSeg's IoUMetric that also names the classes absent from the labels
# next to the mIoU (DatasetCheckHook, in the ATMHead base, checks the class
# counts and label maps before the run)
val_evaluator = test_evaluator = dict(
    type='CheckedIoUMetric', iou_metrics=['mIoU'])
# mmseg's pipelines with ClampedResize (no side of a very elongated image
# is resized to 0 pixels), in the data loaders too
train_pipeline, test_pipeline, tta_pipeline = clamped_resize_pipelines(_base_)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
