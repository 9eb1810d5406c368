# ATMHead on EVA-02 ViT-L/14 (MIM on Merged-38M) with the EVA-02 ADE20K
# recipe (baaivision/EVA EVA-02/seg upernet_eva02_large_24_512_slide_80k.py):
# lr 4e-5, layer decay 0.9, weight decay 0.05, drop path 0.2, 80k
# iterations of 8 x 2, 512 crops (padded to 518 for the 14-pixel patch),
# slide 512 / 341, ImageNet normalisation as in those configs. The official
# segmentation runs use the patch-16 conversion of the same weights
# (eva02_L_pt_m38m_p14to16.pt); this config keeps the released patch 14.
_base_ = [
    '../_base_/models/segvit_timm-vit-l.py',
    '../_base_/datasets/segvit_ade20k-512x512.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-layer-decay-poly_80k.py'
]
checkpoint = 'pretrain/eva02_L_pt_m38m_p14.pt'  # noqa
model = dict(
    backbone=dict(
        model_name='eva02_large_patch14_224',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
optim_wrapper = dict(optimizer=dict(lr=4e-5))
