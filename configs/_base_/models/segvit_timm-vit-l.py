# SegViT's ViT-L model (segvit_vit-l16.py: ATMHead with 512 dims and 16
# heads on blocks 7, 15 and 23 of 24, slide inference) on a ViT-L of timm
# (TimmViT). A config names the timm model, its weights file (init_cfg) and
# the normalisation of its fine-tuning recipe (ImageNet's here: DINOv2,
# DINOv3, BEiT-v2 and the EVA-02 segmentation configs use it).
_base_ = ['./segvit_vit-l16.py']
# One preprocessing for the model and for the wrappers that take the
# top-level one (MMSeg's TTA model under `--tta`).
data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
model = dict(
    pretrained=None,
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='TimmViT',
        model_name='vit_large_patch14_dinov2',
        img_size=(512, 512),
        out_indices=(7, 15, 23),
        drop_path_rate=0.2,
        # True: activation checkpointing, for batch 2 on a 24 GB card
        with_cp=False,
        frozen=False,
        fused_attn=True))
