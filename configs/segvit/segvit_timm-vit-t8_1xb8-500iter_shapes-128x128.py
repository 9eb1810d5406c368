# The demo (segvit_vit-t8_1xb8-500iter_shapes-128x128.py) with its ViT built
# by timm (TimmViT): timm's ViT-Ti/16 made the demo's architecture (patch
# 8, 6 blocks, 128 dims, 4 heads; features after blocks 1, 3, 5), random
# initialisation, the same data, head, optimiser and 500 iterations. Its
# class token is dropped before the head, as in every TimmViT model.
_base_ = ['./segvit_vit-t8_1xb8-500iter_shapes-128x128.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmViT',
        model_name='vit_tiny_patch16_224',
        img_size=(128, 128),
        out_indices=(1, 3, 5),
        model_kwargs=dict(patch_size=8, embed_dim=128, depth=6, num_heads=4)))
