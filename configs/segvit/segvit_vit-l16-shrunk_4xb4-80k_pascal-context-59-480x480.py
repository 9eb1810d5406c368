# SegViT Shrunk ViT-L/16 (QD at layer 8, QU, ATM head with one mask per
# decoder layer; configs/_base_/models/segvit_shrunk_vit-l16.py) on the
# data and schedule of the plain ViT-L/16 config.
_base_ = [
    './segvit_vit-l16_4xb4-80k_pascal-context-59-480x480.py',
    '../_base_/models/segvit_shrunk_vit-l16.py'
]
model = dict(
    backbone={{_base_.shrunk_backbone}},
    decode_head={{_base_.shrunk_decode_head}})
optim_wrapper = {{_base_.shrunk_optim_wrapper}}
