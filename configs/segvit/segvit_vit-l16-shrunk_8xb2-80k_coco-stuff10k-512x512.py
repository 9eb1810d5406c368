# SegViT Shrunk ViT-L/16: segvit_vit-l16_8xb2-80k_coco-stuff10k-512x512.py
# (data, schedule, crop and head settings) with the Shrunk changes of
# configs/_base_/models/segvit_shrunk-changes_vit-l16.py.
_base_ = [
    './segvit_vit-l16_8xb2-80k_coco-stuff10k-512x512.py',
    '../_base_/models/segvit_shrunk-changes_vit-l16.py'
]
model = _base_.shrunk_vit_l16
