# SegViT optimisation: AdamW, no decay on norms, head lr x10, grad clip 35,
# 1500 linear warm-up iterations from 1e-6 then poly decay (power 1.0) to
# max_iters (160k), validation and checkpoints every tenth of the run
# (mmseg's stock 160k schedule otherwise). A shorter run sets max_iters and
# these three (see segvit_adamw-poly_80k.py). QU (`backbone.qu`, Shrunk
# models only) is part of the decode head in the official model: lr x10 too.
_base_ = ['mmseg::_base_/schedules/schedule_160k.py']
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            'norm': dict(decay_mult=0.0),
            'ln': dict(decay_mult=0.0),
            'head': dict(lr_mult=10.0),
            'backbone.qu': dict(lr_mult=10.0)
        }),
    clip_grad=dict(max_norm=35, norm_type=2))
warmup_iters = 1500
max_iters = 160000
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 10)
default_hooks = dict(checkpoint=dict(interval=max_iters // 10))
