# What SegViT Shrunk changes in the plain ViT-L/16 model
# (./segvit_vit-l16.py), as one variable: the layers from 8 on run on a
# quarter of the tokens (QD at layer 8), QU reads the outputs of layers 7
# (1/16) and 23 (1/32) back to the 1/16 grid, and the ATM head reads the QU
# map with one mask per decoder layer. QU trains at the head's learning rate
# (the `backbone.qu` key of the SegViT schedule). A config that inherits a
# plain ViT-L/16 config and this file sets `model = _base_.shrunk_vit_l16`.
shrunk_vit_l16 = dict(
    backbone=dict(
        type='ShrunkViT',
        fused_attn=True,  # fused attention in the ViT and QD layers
        qd_index=8,
        out_indices=[7, 23],
        qu_cfg=dict(embed_dims=512, num_heads=16, num_layers=3)),
    decode_head=dict(
        in_channels=512, use_stages=1, use_proj=False, mask_mode='per_layer'))
