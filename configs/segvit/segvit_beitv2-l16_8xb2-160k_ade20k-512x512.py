# ATMHead on BEiT-v2 ViT-L/16, SegViTv2's strongest backbone, with the
# BEiT-v2 ADE20K fine-tuning recipe (unilm beit2/semantic_segmentation:
# upernet_beit_large_24_512_slide_160k_21ktoade20k.py): lr 3e-5, layer
# decay 0.9, weight decay 0.05, drop path 0.2, 160k iterations of 8 x 2,
# 512 crops, slide 512 / 341, from the 21k-intermediate-fine-tuned file.
# BEiT's relative position tables are built for the 512 crop: inference is
# slide-only.
_base_ = [
    '../_base_/models/segvit_timm-vit-l.py',
    '../_base_/datasets/segvit_ade20k-512x512.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-layer-decay-poly_160k.py'
]
checkpoint = 'pretrain/beitv2_large_patch16_224_pt1k_ft21k.pth'  # noqa
# Test images smaller than the crop (an elongated image resized to 2048 on
# its long side) are padded to it, and the padding cut off the prediction:
# a slide window is never smaller than the crop.
data_preprocessor = dict(test_cfg=dict(size=(512, 512)))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        model_name='beitv2_large_patch16_224',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
