# SegViT ViT-B/16 on ADE20K with kMaX-DeepLab's k-means cross-attention in
# the ATM decoder layers (argmax over queries instead of softmax over
# tokens); everything else is the plain ViT-B config it inherits.
# k-means trains q and k of a layer only through that layer's supervised
# mask, so every decoder layer is supervised: 3 stages x 3 layers = 9 outputs.
_base_ = ['./segvit_vit-b16_8xb2-160k_ade20k-512x512.py']
model = dict(
    decode_head=dict(
        cross_attn_cfg=dict(type='KMeansCrossAttention'),
        mask_mode='per_layer'))
