# SegViT Shrunk on ViT-L/16: the plain ViT-L/16 model with the layers from
# 8 on running on a quarter of the tokens (QD at layer 8), QU over the
# outputs of layers 7 (1/16) and 23 (1/32) back to the 1/16 grid, and the
# ATM head on the QU map with one mask per decoder layer. QU trains at the
# head's learning rate (the `backbone.qu` key of the SegViT schedule).
_base_ = ['./segvit_vit-l16.py']
model = dict(
    backbone=dict(
        type='ShrunkViT',
        fused_attn=True,  # fused attention in the ViT and QD layers
        qd_index=8,
        out_indices=[7, 23],
        qu_cfg=dict(embed_dims=512, num_heads=16, num_layers=3)),
    decode_head=dict(
        in_channels=512, use_stages=1, use_proj=False, mask_mode='per_layer'))
