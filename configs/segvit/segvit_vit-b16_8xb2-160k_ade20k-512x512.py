_base_ = [
    '../_base_/models/segvit_vit-b16.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-poly_160k.py'
]
# 8 GPUs x 2 images = 16 per iteration
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
