# SegViT with a plain ViT-L/16 backbone (features after layers 7, 15, 23).
_base_ = ['./segvit_vit-b16.py']
# AugReg ImageNet-21k ViT-L/16 (384), mmseg key layout (see README).
checkpoint = 'pretrain/vit_large_p16_384_20220308-d4efb41d.pth'  # noqa
model = dict(
    pretrained=checkpoint,
    backbone=dict(
        embed_dims=1024,
        num_layers=24,
        num_heads=16,
        drop_path_rate=0.3,
        out_indices=[7, 15, 23]),
    decode_head=dict(in_channels=1024, embed_dims=512, num_heads=16))
