# The SegViT optimisation of segvit_adamw-poly_160k.py over 80k iterations.
_base_ = ['./segvit_adamw-poly_160k.py']
max_iters = 80000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, end=1500),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        by_epoch=False,
        begin=1500,
        end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000))
# Exact resume: also restore the model's random state (dropout, drop-path).
custom_hooks = [dict(type='RNGStateHook')]
