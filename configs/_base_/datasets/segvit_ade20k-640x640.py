# ADE20K at 640x640 crops, as the official ViT-L model was trained and
# tested: segvit_ade20k-512x512.py with (2048, 640) for (2048, 512) in every
# resize (mmseg's ade20k_640x640.py resizes to (2560, 640)) and 640 crops.
_base_ = ['./segvit_ade20k-512x512.py']
crop_size = (640, 640)
train_pipeline = [
    dict(t, scale=(2048, 640)) if t.type == 'RandomResize' else
    dict(t, crop_size=crop_size) if t.type == 'RandomCrop' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=(2048, 640)) if t.type == 'ClampedResize' else t
    for t in _base_.test_pipeline
]
tta_pipeline = [
    _base_.tta_pipeline[0],
    dict(
        _base_.tta_pipeline[1],
        transforms=[[
            dict(
                type='ClampedResize',
                scale=(int(2048 * r), int(640 * r)),
                keep_ratio=True) for r in _base_.img_ratios
        ], *_base_.tta_pipeline[1].transforms[1:]])
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# MMSeg's IoUMetric that also names the classes absent from the labels
# (left out of mIoU, or scored 0) next to the mIoU it prints
val_evaluator = test_evaluator = dict(
    type='CheckedIoUMetric', iou_metrics=['mIoU'])
