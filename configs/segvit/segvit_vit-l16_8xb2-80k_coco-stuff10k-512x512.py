_base_ = [
    '../_base_/models/segvit_vit-l16.py',
    'mmseg::_base_/datasets/coco-stuff10k.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-poly_80k.py'
]
num_classes = 171
model = dict(
    decode_head=dict(
        num_classes=num_classes, loss_decode=dict(num_classes=num_classes)))
# 8 GPUs x 2 images = 16 per iteration
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
