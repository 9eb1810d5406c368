# MMSeg's ViT-B/16 + MLN + UPerNet with ATMHead as the decode head.
# MultiLevelNeck gives three 768-channel maps at 1/8, 1/16 and 1/32 (from
# layers 5, 8 and 11; the stock 1/4 level from layer 2 is not built, so
# every parameter gets a gradient, as DDP needs); ATMHead reads all three
# (deepest first) and predicts masks at 1/8.
# The FCN auxiliary head reads the 1/32 map (now neck output 2) on its own
# and is kept.
_base_ = [
    'mmseg::vit/'
    'vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py',
    '../../_base_/models/atm_head.py'
]
from mmseg_segvit.utils import clamped_resize_pipelines

custom_imports = dict(imports=['mmseg_segvit'], allow_failed_imports=False)
model = dict(
    backbone=dict(out_indices=(5, 8, 11)),
    neck=dict(in_channels=[768, 768, 768], scales=[2, 1, 0.5]),
    decode_head=dict(
        _base_.atm_head, _delete_=True, in_index=[0, 1, 2], in_channels=768),
    auxiliary_head=dict(in_index=2))
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
