# The demo config with kMaX-DeepLab's k-means cross-attention in the ATM
# decoder layers (argmax over queries instead of softmax over tokens); same
# backbone, data, schedule and budget as the softmax demo it inherits.
# k-means trains q and k of a layer only through that layer's supervised
# mask, so every decoder layer is supervised: 3 stages x 2 layers = 6 outputs.
_base_ = ['./segvit_vit-t8_1xb8-500iter_shapes-128x128.py']
model = dict(
    decode_head=dict(
        cross_attn_cfg=dict(type='KMeansCrossAttention'),
        mask_mode='per_layer'))
