# SegViT: plain ViT-B/16 backbone + ATM head (Zhang et al., NeurIPS 2022).
custom_imports = dict(imports=['mmseg_segvit'], allow_failed_imports=False)

# Pretrained backbone: the AugReg ImageNet-21k ViT-B/16 (384) that Segmenter
# uses, in mmseg's key layout. Download it (see README) to this path or
# point `pretrained` at your copy; set it to None to train from scratch.
checkpoint = 'pretrain/vit_base_p16_384_20220308-96dfe169.pth'  # noqa
data_preprocessor = dict(
    type='SegDataPreProcessor',
    # JAX (AugReg) normalisation
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=checkpoint,
    backbone=dict(
        type='FusedVisionTransformer',
        # torch's fused scaled_dot_product_attention; same weights and keys
        # as mmseg's VisionTransformer (False: mmseg's attention)
        fused_attn=True,
        img_size=(512, 512),
        patch_size=16,
        # mmseg 1.x defaults to no bias; the official model and the ViT
        # weights have one
        patch_bias=True,
        in_channels=3,
        embed_dims=768,
        num_layers=12,
        num_heads=12,
        drop_path_rate=0.1,
        attn_drop_rate=0.0,
        drop_rate=0.0,
        out_indices=[5, 7, 11],
        final_norm=False,
        norm_cfg=dict(type='LN', eps=1e-6, requires_grad=True),
        with_cls_token=False,
        interpolate_mode='bicubic'),
    decode_head=dict(
        type='ATMHead',
        in_channels=768,
        embed_dims=384,
        num_classes=150,
        num_layers=3,
        num_heads=12,
        use_stages=3,
        # the head gives ATMLoss num_classes and the number of outputs
        loss_decode=dict(type='ATMLoss')),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
