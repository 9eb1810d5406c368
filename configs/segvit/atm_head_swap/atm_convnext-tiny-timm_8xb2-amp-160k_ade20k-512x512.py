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
# The package's run checks: class counts and label maps before the run
# (DatasetCheckHook), the classes absent from the labels next to the mIoU
custom_hooks = [dict(type='DatasetCheckHook')]
val_evaluator = dict(type='CheckedIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# mmseg's pipelines with ClampedResize (no side of a very elongated image
# is resized to 0 pixels)
train_pipeline = [
    dict(t, resize_type='ClampedResize') if t.type == 'RandomResize' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, type='ClampedResize') if t.type == 'Resize' else t
    for t in _base_.test_pipeline
]
tta_pipeline = [
    _base_.tta_pipeline[0],
    dict(
        _base_.tta_pipeline[1],
        transforms=[[
            dict(t, type='ClampedResize') if t.type == 'Resize' else t
            for t in step
        ] for step in _base_.tta_pipeline[1].transforms])
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
