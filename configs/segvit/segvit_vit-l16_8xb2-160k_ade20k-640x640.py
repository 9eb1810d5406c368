_base_ = [
    '../_base_/models/segvit_vit-l16.py',
    '../_base_/datasets/segvit_ade20k-640x640.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-poly_160k.py'
]
model = dict(
    data_preprocessor=dict(size=_base_.crop_size),
    backbone=dict(img_size=_base_.crop_size),
    test_cfg=dict(crop_size=_base_.crop_size, stride=(608, 608)))
