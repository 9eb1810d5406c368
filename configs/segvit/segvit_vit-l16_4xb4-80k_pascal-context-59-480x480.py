# PASCAL-Context with 59 classes (background ignored), mmseg's PC-59 data.
_base_ = [
    '../_base_/models/segvit_vit-l16.py',
    '../_base_/datasets/segvit_pascal-context-59-480x480.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-poly_80k.py'
]
# One preprocessing for the model and for the wrappers that take the
# top-level one (MMSeg's TTA model under `--tta`).
data_preprocessor = dict(size=_base_.crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(img_size=_base_.crop_size),
    decode_head=dict(num_classes=59),
    test_cfg=dict(crop_size=_base_.crop_size, stride=(320, 320)))
optim_wrapper = dict(optimizer=dict(weight_decay=0.03))
