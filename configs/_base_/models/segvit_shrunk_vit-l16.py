# SegViT Shrunk on ViT-L/16, as parts that a plain SegViT ViT-L/16 config
# takes over (see configs/segvit/segvit_vit-l16-shrunk_*.py): the layers
# from 8 on run on a quarter of the tokens (QD at layer 8), QU over the
# outputs of layers 7 (1/16) and 23 (1/32) back to the 1/16 grid, and the
# ATM head on the QU map with one mask per decoder layer.
shrunk_backbone = dict(
    type='ShrunkViT',
    fused_attn=True,  # fused attention in the ViT and QD layers
    qd_index=8,
    out_indices=[7, 23],
    qu_cfg=dict(embed_dims=512, num_heads=16, num_layers=3))
shrunk_decode_head = dict(
    in_channels=512, use_stages=1, use_proj=False, mask_mode='per_layer')
# QU is part of the decode head in the official model: same lr (x10).
shrunk_optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone.qu': dict(lr_mult=10.0)}))
