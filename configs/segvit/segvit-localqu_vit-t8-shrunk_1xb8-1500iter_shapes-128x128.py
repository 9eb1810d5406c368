# NOT the official Shrunk structure: the Shrunk demo
# (segvit_vit-t8-shrunk_1xb8-1500iter_shapes-128x128.py, same ViT start,
# data and schedule) with the opt-in locality prior in QU's cross-attention
# (QueryUpsample(locality_sigma=1.0): a Gaussian of 1 output-grid cell on the
# attention logits, no parameters). The official QU has no positional
# prior and takes position from the ViT's features (the demo ViT's fixed
# sine-cosine table); this config shows what a prior adds on top.
_base_ = ['./segvit_vit-t8-shrunk_1xb8-1500iter_shapes-128x128.py']
model = dict(backbone=dict(qu_cfg=dict(locality_sigma=1.0)))
