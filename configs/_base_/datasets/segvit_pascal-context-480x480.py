# PASCAL-Context with 60 classes (59 + background as class 0), as the
# official model was trained: segvit_pascal-context-59-480x480.py on
# mmseg's 60-class dataset, with the labels loaded as they are (PC-59 drops
# the background with reduce_zero_label).
_base_ = ['./segvit_pascal-context-59-480x480.py']
dataset_type = 'PascalContextDataset'

# PC-59's pipelines with the labels loaded as they are
train_pipeline = [*_base_.train_pipeline]
train_pipeline[1] = dict(type='LoadAnnotations')
test_pipeline = [*_base_.test_pipeline]
test_pipeline[2] = dict(type='LoadAnnotations')
tta_pipeline = [
    _base_.tta_pipeline[0],
    dict(
        _base_.tta_pipeline[1],
        transforms=[
            *_base_.tta_pipeline[1].transforms[:2], [test_pipeline[2]],
            [test_pipeline[3]]
        ])
]
train_dataloader = dict(
    dataset=dict(type=dataset_type, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(type=dataset_type, pipeline=test_pipeline))
test_dataloader = val_dataloader
# MMSeg's IoUMetric that also names the classes absent from the labels
# (left out of mIoU, or scored 0) next to the mIoU it prints
val_evaluator = test_evaluator = dict(
    type='CheckedIoUMetric', iou_metrics=['mIoU'])
