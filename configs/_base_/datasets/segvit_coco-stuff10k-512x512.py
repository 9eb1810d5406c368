# COCO-Stuff-10K (171 classes) at 512x512 crops, as the official SegViT
# model was trained and tested: mmseg's training pipeline (resize to (2048,
# 512) by 0.5-2.0), 8 GPUs x 2 images = 16 per iteration.
_base_ = ['mmseg::_base_/datasets/coco-stuff10k.py']
from mmseg_segvit.utils import clamped_resize

# Test scale of the official pipeline (mmseg 0.24: img_scale (2048, 512),
# Resize(keep_ratio=True, min_size=512)): the short side goes to 512 and
# the long side follows, uncapped (mmseg 1.x's stock (2048, 512) caps it
# at 2048, i.e. beyond 4:1). The 8192 cap binds only beyond 16:1.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ClampedResize', scale=(8192, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
# Multi-scale + flip test (`--tta`) at the official scales: mmseg 0.24's
# --aug-test scales (2048, 512) by each ratio and keeps min_size=512, so
# the short sides are 512, 512, 512, 640, 768, 896 (512 three times, as
# there: each view is averaged with equal weight).
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='ClampedResize',
                    scale=(8192, max(int(512 * r), 512)),
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
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# MMSeg's IoUMetric that also names the classes absent from the labels
# (left out of mIoU, or scored 0) next to the mIoU it prints
val_evaluator = test_evaluator = dict(
    type='CheckedIoUMetric', iou_metrics=['mIoU'])
