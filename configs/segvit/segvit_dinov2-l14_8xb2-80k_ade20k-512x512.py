# ATMHead on DINOv2 ViT-L/14, fine-tuned. DINOv2 publishes no fine-tuning
# recipe for ADE20K at this size, so the EVA-02 ViT-L recipe is used (lr
# 4e-5, layer decay 0.9, weight decay 0.05, drop path 0.2, 80k iterations
# of 8 x 2); 512 crops are zero-padded to 518 (37 x 37 patches) as the
# official DINOv2 segmentation code pads; slide 512 / 341.
_base_ = [
    '../_base_/models/segvit_timm-vit-l.py',
    '../_base_/datasets/segvit_ade20k-512x512.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-layer-decay-poly_80k.py'
]
checkpoint = 'pretrain/dinov2_vitl14_pretrain.pth'  # noqa
model = dict(
    backbone=dict(
        model_name='vit_large_patch14_dinov2',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
optim_wrapper = dict(optimizer=dict(lr=4e-5))
