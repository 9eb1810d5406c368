# MMSeg's BEiT-B + UPerNet with ATMHead as the decode head.
# Feature2Pyramid gives four 768-channel maps at 1/4 to 1/32; ATMHead reads
# the last three and predicts masks at 1/8. The layer-wise lr decay of the
# stock config treats every non-backbone parameter as the head (lr x 1).
# The FCN auxiliary head reads pyramid level 2 on its own and is kept.
_base_ = [
    'mmseg::beit/beit-base_upernet_8xb2-160k_ade20k-640x640.py',
    '../../_base_/models/atm_head.py',
    '../../_base_/models/atm_head_feature2pyramid.py'
]
from mmseg_segvit.utils import clamped_resize_pipelines

custom_imports = dict(imports=['mmseg_segvit'], allow_failed_imports=False)
model = dict(decode_head=dict(_base_.atm_head, _delete_=True, in_channels=768))
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
