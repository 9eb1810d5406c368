# MMSeg's DeiT-S/16 + UPerNet (no neck) with ATMHead as the decode head.
# The plain ViT gives four 384-channel maps at 1/16 (after layers 2, 5, 8
# and 11); ATMHead reads the last three, as SegViT does on a plain ViT.
# The FCN auxiliary head reads backbone output 3 on its own and is kept.
_base_ = [
    'mmseg::vit/vit_deit-s16_upernet_8xb2-160k_ade20k-512x512.py',
    '../../_base_/models/atm_head.py'
]
custom_imports = dict(imports=['mmseg_segvit'], allow_failed_imports=False)
model = dict(
    decode_head=dict(
        _base_.atm_head, _delete_=True, in_channels=384, embed_dims=192))
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
