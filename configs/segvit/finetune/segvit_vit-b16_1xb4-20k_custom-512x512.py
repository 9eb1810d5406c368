# Fine-tune SegViT ViT-B/16, trained on ADE20K (150 classes), on your own
# dataset with another number of classes (here 5).
#
# Data layout (MMSeg's usual one; labels are PNG images of class indices
# 0..num_classes-1, 255 = ignore):
#   data/my_dataset/img_dir/{train,val}/*.jpg
#   data/my_dataset/ann_dir/{train,val}/*.png   (same file stems)
# Images are expected as .jpg (`img_suffix` of `dataset` below); for other
# images set it, e.g. img_suffix='.png'. Images with another suffix stop
# the run when the dataset is built, saying so.
#
# The whole model starts from `load_from`. Only the class queries
# (decode_head.q, num_classes x D) and the classifier
# (decode_head.class_embed, D -> num_classes + 1) depend on the class count.
# Loading a 150-class checkpoint into this 5-class model is an error, so
# convert the released model (docs/checkpoints.md), then drop those tensors:
#   python tools/convert_official_segvit.py ade_51.3.pth \
#       checkpoints/segvit_vit-b16_ade20k_51.3.pth
#   python -m mmseg_segvit.tools.drop_class_weights \
#       checkpoints/segvit_vit-b16_ade20k_51.3.pth \
#       checkpoints/segvit_vit-b16_ade20k_51.3_no-class-weights.pth
# They then start from their fresh initialisation; everything else
# (backbone, projections, ATM decoders) is reused.
_base_ = ['../segvit_vit-b16_8xb2-160k_ade20k-512x512.py']

num_classes = 5
metainfo = dict(
    classes=('background', 'road', 'building', 'vegetation', 'vehicle'),
    palette=[[0, 0, 0], [128, 64, 128], [70, 70, 70], [107, 142, 35],
             [0, 0, 142]])
data_root = 'data/my_dataset'
load_from = 'checkpoints/segvit_vit-b16_ade20k_51.3_no-class-weights.pth'

model = dict(
    pretrained=None,  # the backbone comes with load_from
    decode_head=dict(num_classes=num_classes))

# ADE20K's pipelines, with the labels loaded as they are (ADE20K's drop
# label 0 with reduce_zero_label)
train_pipeline = [*_base_.train_pipeline]
train_pipeline[1] = dict(type='LoadAnnotations')
test_pipeline = [*_base_.test_pipeline]
test_pipeline[2] = dict(type='LoadAnnotations')
# --tta: the same scales and flips, labels kept as they are
tta_pipeline = [
    _base_.tta_pipeline[0],
    dict(
        type='TestTimeAug',
        transforms=[
            step if step[0]['type'] != 'LoadAnnotations' else
            [dict(type='LoadAnnotations')]
            for step in _base_.tta_pipeline[1]['transforms']
        ])
]
dataset = dict(
    _delete_=True,
    # any folder of images + label PNGs (mmseg's BaseSegDataset); checks
    # its folders when built: images with another suffix than img_suffix
    # (or labels without seg_map_suffix) stop before training, saying so
    type='CheckedSegDataset',
    metainfo=metainfo,
    data_root=data_root,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=False)
train_dataloader = dict(
    batch_size=4,
    dataset=dict(
        **dataset,
        data_prefix=dict(
            img_path='img_dir/train', seg_map_path='ann_dir/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# The SegViT schedule, shorter: 20k iterations, 500 warm-up, checkpoints
# and validation every tenth (2k).
max_iters = 20000
warmup_iters = 500
param_scheduler = [
    dict(_base_.param_scheduler[0], end=warmup_iters),
    dict(_base_.param_scheduler[1], begin=warmup_iters, end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 10)
default_hooks = dict(
    checkpoint=dict(interval=max_iters // 10, max_keep_ckpts=2))
