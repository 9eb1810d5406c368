_base_ = [
    '../_base_/models/segvit_vit-b16.py',
    '../_base_/datasets/segvit_ade20k-512x512.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/segvit_adamw-poly_160k.py'
]
