# The demo: a small ViT (patch 8, trained from scratch) with ATMHead on the
# embedded shapes dataset; trains and tests on 2 CPU cores in minutes.
# The ViT carries position as a pretrained one does: MAE's fixed 2D
# sine-cosine table (a learned table trained from scratch for this head,
# which needs no position, stays near zero), so the Shrunk demo that starts
# from this ViT finds its place through the features.
_base_ = [
    '../_base_/models/segvit_vit-b16.py',
    '../_base_/datasets/segvit_shapes.py', '../_base_/default_runtime.py'
]
num_classes = 12
max_iters = 500
# One preprocessing for the model and for the wrappers that take the
# top-level one (MMSeg's TTA model under `--tta`).
data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    size=(128, 128))
model = dict(
    pretrained=None,
    data_preprocessor=data_preprocessor,
    backbone=dict(
        img_size=(128, 128),
        patch_size=8,
        embed_dims=128,
        num_layers=6,
        num_heads=4,
        drop_path_rate=0.0,
        pos_embed_init='sincos',
        pos_embed_trainable=False,
        out_indices=[1, 3, 5]),
    decode_head=dict(
        in_channels=128,
        embed_dims=128,
        num_heads=4,
        num_layers=2,
        num_classes=num_classes),
    test_cfg=dict(_delete_=True, mode='whole'))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'norm': dict(decay_mult=0.0),
        'ln': dict(decay_mult=0.0)
    }),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, end=100),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        by_epoch=False,
        begin=100,
        end=max_iters)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=max_iters,
        max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
