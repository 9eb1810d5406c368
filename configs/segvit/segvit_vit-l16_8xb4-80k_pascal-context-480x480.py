# PASCAL-Context with 60 classes (59 + background), as the official model
# was trained.
_base_ = [
    '../_base_/models/segvit_vit-l16_480.py',
    'mmseg::_base_/datasets/pascal_context.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-poly_80k.py'
]
num_classes = 60
model = dict(
    decode_head=dict(
        num_classes=num_classes, loss_decode=dict(num_classes=num_classes)))
optim_wrapper = dict(optimizer=dict(weight_decay=0.03))
# 8 GPUs x 4 images = 32 per iteration
train_dataloader = dict(batch_size=4)
val_dataloader = dict(batch_size=1)
