# ADE20K (150 classes) at 512x512 crops, as the official SegViT models were
# trained and tested: mmseg's ADE20K settings and pipelines (training:
# resize to (2048, 512) by 0.5-2.0, 512 crops, flip, photometric
# distortion; test: resize to (2048, 512)), 8 GPUs x 2 images = 16 per
# iteration, and the official multi-scale + flip test (`--tta`): mmseg
# 0.24's --aug-test scales (2048, 512) by each of mmseg's img_ratios (0.5
# to 1.75, as there; mmseg 1.x's stock Resize(scale_factor=r) would scale
# the raw image instead); each of the 12 views (6 scales, as is and
# flipped) is averaged with equal weight.
_base_ = ['mmseg::_base_/datasets/ade20k.py']
from mmseg_segvit.utils import clamped_resize

tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='ClampedResize',
                    scale=(int(2048 * r), int(512 * r)),
                    keep_ratio=True) for r in _base_.img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ])
]
# mmseg's test pipeline with ClampedResize (no side of a very elongated
# image is resized to 0 pixels)
test_pipeline = clamped_resize(_base_.test_pipeline)
# mmseg's training pipeline, resizing with ClampedResize (no side of a very
# elongated image is resized to 0 pixels)
train_pipeline = clamped_resize(_base_.train_pipeline)
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# MMSeg's IoUMetric that also names the classes absent from the labels
# (left out of mIoU, or scored 0) next to the mIoU it prints
val_evaluator = test_evaluator = dict(
    type='CheckedIoUMetric', iou_metrics=['mIoU'])
