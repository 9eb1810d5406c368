# segvit_adamw-layer-decay-poly_160k.py over 80k iterations: the poly decay
# ends at max_iters, validation and checkpoints every tenth.
_base_ = ['./segvit_adamw-layer-decay-poly_160k.py']
max_iters = 80000
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 10)
default_hooks = dict(checkpoint=dict(interval=max_iters // 10))
