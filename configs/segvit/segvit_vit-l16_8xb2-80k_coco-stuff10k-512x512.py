_base_ = [
    '../_base_/models/segvit_vit-l16.py',
    '../_base_/datasets/segvit_coco-stuff10k-512x512.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-poly_80k.py'
]
model = dict(decode_head=dict(num_classes=171))
# The official COCO-Stuff-10K recipe
# (segvit_vit-l_jax_512x512_80k_cocostuff10k.py): weight decay 0.02 and
# poly power 2.0 (ADE20K: 0.01 and 1.0).
optim_wrapper = dict(optimizer=dict(weight_decay=0.02))
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], power=2.0)
]
