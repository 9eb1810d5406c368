# PASCAL-Context with 59 classes (background ignored) at 480x480 crops, on
# mmseg's PC-59 data settings: mmseg's training pipeline (resize to (520,
# 520) by 0.5-2.0, 480 crops), 4 GPUs x 4 images = 16 per iteration, as the
# official PASCAL-Context run (one node of 4 GPUs; on 8 GPUs use
# batch_size=2 to keep 16).
_base_ = ['mmseg::_base_/datasets/pascal_context_59.py']
from mmseg_segvit.utils import clamped_resize

# Test scale of the official pipeline (mmseg 0.24: img_scale (520, 520),
# Resize(keep_ratio=True, min_size=480)): the SHORT side goes to 520 and
# the long side follows (375x500 -> 520x693). mmseg 1.x's
# Resize(scale=(520, 520)) would cap the long side at 520 instead
# (375x500 -> 390x520). The 8192 cap binds only beyond 15:1.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ClampedResize', scale=(8192, 520), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
# Multi-scale + flip test (`--tta`) at the official scales: mmseg 0.24's
# --aug-test scales img_scale by [0.5, ..., 1.75] and keeps min_size=480,
# so the short sides are 480, 480, 520, 650, 780, 910 (480 twice, as
# there: each view is averaged with equal weight).
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='ClampedResize',
                    scale=(8192, max(int(520 * r), 480)),
                    keep_ratio=True) for r in _base_.img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [test_pipeline[2]],
            [test_pipeline[3]],
        ])
]
# mmseg's training pipeline, resizing with ClampedResize (no side of a very
# elongated image is resized to 0 pixels)
train_pipeline = clamped_resize(_base_.train_pipeline)
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# MMSeg's IoUMetric that also names the classes absent from the labels
# (left out of mIoU, or scored 0) next to the mIoU it prints
val_evaluator = test_evaluator = dict(
    type='CheckedIoUMetric', iou_metrics=['mIoU'])
