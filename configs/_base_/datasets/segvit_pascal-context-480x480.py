# PASCAL-Context with 60 classes (59 + background as class 0), as the
# official model was trained: segvit_pascal-context-59-480x480.py on
# mmseg's 60-class dataset, with the labels loaded as they are (PC-59 drops
# the background with reduce_zero_label).
_base_ = ['./segvit_pascal-context-59-480x480.py']
dataset_type = 'PascalContextDataset'


def keep_zero_label(pipeline):
    return [
        dict(type='LoadAnnotations') if t.type == 'LoadAnnotations' else t
        for t in pipeline
    ]


train_pipeline = keep_zero_label(_base_.train_pipeline)
test_pipeline = keep_zero_label(_base_.test_pipeline)
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
