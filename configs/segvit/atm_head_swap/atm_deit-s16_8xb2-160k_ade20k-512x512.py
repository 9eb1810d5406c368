# MMSeg's DeiT-S/16 + UPerNet (no neck) with ATMHead as the decode head.
# The plain ViT gives four 384-channel maps at 1/16 (after layers 2, 5, 8
# and 11); ATMHead reads the last three, as SegViT does on a plain ViT.
# The FCN auxiliary head reads backbone output 3 on its own and is kept.
_base_ = [
    'mmseg::vit/vit_deit-s16_upernet_8xb2-160k_ade20k-512x512.py',
    '../../_base_/models/atm_head.py'
]
from mmseg_segvit.utils import clamped_resize_pipelines

custom_imports = dict(imports=['mmseg_segvit'], allow_failed_imports=False)
model = dict(
    decode_head=dict(
        _base_.atm_head, _delete_=True, in_channels=384, embed_dims=192))
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
