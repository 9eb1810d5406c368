# ATMHead trained on a frozen DINOv3 ViT-L/16 (head-only training: the
# backbone stays in eval mode and gets no gradients, no optimizer state and
# no weight decay). The DINOv3 ADE20K linear-probe recipe
# (dinov3/eval/segmentation/configs/config-ade20k-linear-training.yaml):
# AdamW lr 1e-3, weight decay 1e-3, 1500 linear warm-up iterations from
# 1e-6 then cosine decay to 0, 40k iterations of 8 x 2, resize 0.5-2.0,
# 512 crops, flip, slide 512 / 341; SegViT's grad clip 35 for the ATM head.
_base_ = ['./segvit_dinov3-l16_8xb2-80k_ade20k-512x512.py']
model = dict(backbone=dict(frozen=True, drop_path_rate=0.0))
# Layer decay 1: one lr for the head; the constructor leaves the frozen
# backbone out of the optimizer.
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=1e-3),
    paramwise_cfg=dict(_delete_=True, layer_decay_rate=1.0))
warmup_iters = 1500
max_iters = 40000
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 8)
default_hooks = dict(checkpoint=dict(interval=max_iters // 8))
