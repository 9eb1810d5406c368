_base_ = [
    '../_base_/models/segvit_vit-l16.py',
    '../_base_/datasets/segvit_ade20k-640x640.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-poly_160k.py'
]
# One preprocessing for the model and for the wrappers that take the
# top-level one (MMSeg's TTA model under `--tta`).
data_preprocessor = dict(size=_base_.crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(img_size=_base_.crop_size),
    test_cfg=dict(crop_size=_base_.crop_size, stride=(608, 608)))
