# SegViT Shrunk: ViT-L/16 whose layers from 8 on run on a quarter of the
# tokens (QD at layer 8), QU over the outputs of layers 7 (1/16) and 23
# (1/32) back to the 1/16 grid, and the ATM head on the QU map with one
# mask per decoder layer.
_base_ = ['./segvit_vit-l16_8xb4-80k_pascal-context-480x480.py']
model = dict(
    backbone=dict(
        type='ShrunkViT',
        qd_index=8,
        out_indices=[7, 23],
        qu_cfg=dict(embed_dims=512, num_heads=16, num_layers=3)),
    decode_head=dict(
        in_channels=512, use_stages=1, use_proj=False, mask_mode='per_layer'))
# QU is part of the decode head in the official model: same lr (x10).
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone.qu': dict(lr_mult=10.0)}))
