# Fine-tuning a pretrained timm ViT under ATMHead: the BEiT-v2 / EVA-02
# ADE20K optimiser (AdamW lr 3e-5, weight decay 0.05, layer-wise lr decay
# 0.9: block i of L at lr * 0.9 ** (L - i), patch embedding, tokens and
# position table at lr * 0.9 ** (L + 1); no weight decay on norms, biases,
# tokens, position tables and layer scales) with SegViT's decode head lr x10
# and grad clip 35, and the warm-up, poly decay and 160k iterations of
# segvit_adamw-poly_160k.py.
_base_ = ['./segvit_adamw-poly_160k.py']
optim_wrapper = dict(
    constructor='ViTLayerDecayOptimWrapperConstructor',
    optimizer=dict(lr=3e-5, weight_decay=0.05),
    paramwise_cfg=dict(
        _delete_=True,
        layer_decay_rate=0.9,
        custom_keys={'decode_head': dict(lr_mult=10.0)}))
