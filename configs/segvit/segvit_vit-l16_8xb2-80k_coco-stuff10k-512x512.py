_base_ = [
    '../_base_/models/segvit_vit-l16.py',
    'mmseg::_base_/datasets/coco-stuff10k.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-poly_80k.py'
]
num_classes = 171
model = dict(decode_head=dict(num_classes=num_classes))
# The official COCO-Stuff-10K recipe
# (segvit_vit-l_jax_512x512_80k_cocostuff10k.py): weight decay 0.02 and
# poly power 2.0 (ADE20K: 0.01 and 1.0).
optim_wrapper = dict(optimizer=dict(weight_decay=0.02))
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], power=2.0)
]
# Test scale of the official pipeline (mmseg 0.24: img_scale (2048, 512),
# Resize(keep_ratio=True, min_size=512)): the short side goes to 512 and
# the long side follows, uncapped (mmseg 1.x's stock (2048, 512) caps it
# at 2048, i.e. beyond 4:1). The 8192 cap binds only beyond 16:1.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(8192, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
# Multi-scale + flip test (`--tta`) at the official scales: mmseg 0.24's
# --aug-test scales (2048, 512) by each ratio and keeps min_size=512, so
# the short sides are 512, 512, 512, 640, 768, 896 (512 three times, as
# there: each view is averaged with equal weight).
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='Resize',
                    scale=(8192, max(int(512 * r), 512)),
                    keep_ratio=True) for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ])
]
# 8 GPUs x 2 images = 16 per iteration
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
