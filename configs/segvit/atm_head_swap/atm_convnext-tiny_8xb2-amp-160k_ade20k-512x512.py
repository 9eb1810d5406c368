# MMSeg's ConvNeXt-T + UPerNet with ATMHead as the decode head.
# The stock config takes ConvNeXt from mmpretrain: `pip install mmpretrain`
# (see atm_convnext-tiny-timm_8xb2-amp-160k_ade20k-512x512.py for the same
# network from timm, which needs no extra package).
# ConvNeXt gives maps of 192, 384 and 768 channels at 1/8 to 1/32 (stages
# 1-3; stage 0 is not output, so its norm0 is not built and every parameter
# gets a gradient, as DDP needs); ATMHead reads all three and predicts masks
# at 1/8. The stage-wise lr decay of the stock config treats every
# non-backbone parameter as the head.
# The FCN auxiliary head reads stage 2 (now output 1) on its own and is kept.
_base_ = [
    'mmseg::convnext/'
    'convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py',
    '../../_base_/models/atm_head.py'
]
from mmseg_segvit.utils import clamped_resize_pipelines

custom_imports = dict(
    imports=['mmpretrain.models', 'mmseg_segvit'], allow_failed_imports=False)
model = dict(
    backbone=dict(out_indices=[1, 2, 3]),
    decode_head=dict(
        _base_.atm_head,
        _delete_=True,
        in_index=[0, 1, 2],
        in_channels=[192, 384, 768]),
    auxiliary_head=dict(in_index=1))
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
