# SegViT ViT-L/16 at 480x480 crops (PASCAL-Context), slide stride 320.
_base_ = ['./segvit_vit-l16.py']
model = dict(
    data_preprocessor=dict(size=(480, 480)),
    backbone=dict(img_size=(480, 480)),
    test_cfg=dict(crop_size=(480, 480), stride=(320, 320)))
