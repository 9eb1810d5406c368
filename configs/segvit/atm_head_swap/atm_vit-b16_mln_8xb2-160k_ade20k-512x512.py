# MMSeg's ViT-B/16 + MLN + UPerNet with ATMHead as the decode head.
# MultiLevelNeck gives four 768-channel maps at 1/4, 1/8, 1/16 and 1/32;
# ATMHead reads the last three (deepest first) and predicts masks at 1/8.
# The FCN auxiliary head reads neck output 3 on its own and is kept.
_base_ = [
    'mmseg::vit/'
    'vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py',
    '../../_base_/models/atm_head.py'
]
custom_imports = dict(imports=['mmseg_segvit'], allow_failed_imports=False)
model = dict(
    decode_head=dict(
        _base_.atm_head, _delete_=True, in_channels=768))
