"""The state-dict key grammar of mmseg's ``VisionTransformer``.

MMSegmentation 0.24 and 1.x name the ViT's parameters identically
(``mmseg/models/backbones/vit.py``): ``patch_embed.projection``,
``cls_token``, ``pos_embed``, ``ln1`` (the final norm) and, per layer,
``layers.{i}.ln1/ln2``, ``layers.{i}.attn.attn.in_proj_*`` /
``out_proj.*`` and ``layers.{i}.ffn.layers.0.0`` / ``ffn.layers.1``. Both
checkpoint converters (:mod:`.official_segvit`, :mod:`.timm_vit`) match
backbone keys against :data:`VIT_KEY`, so a key outside this grammar is
reported instead of passed on.
"""
__all__ = ['VIT_LAYER_KEY', 'VIT_KEY']

#: Parameter names inside one mmseg ViT layer (after ``layers.{i}.``).
VIT_LAYER_KEY = (r'(?:ln1|ln2)\.(?:weight|bias)'
                 r'|attn\.attn\.(?:in_proj_weight|in_proj_bias'
                 r'|out_proj\.weight|out_proj\.bias)'
                 r'|ffn\.layers\.(?:0\.0|1)\.(?:weight|bias)')

#: Parameter names of mmseg's VisionTransformer (no prefix), a regex to
#: ``fullmatch``.
VIT_KEY = (r'(?:patch_embed\.projection\.(?:weight|bias)|cls_token'
           r'|pos_embed|ln1\.(?:weight|bias)|layers\.\d+\.(?:' +
           VIT_LAYER_KEY + '))')
