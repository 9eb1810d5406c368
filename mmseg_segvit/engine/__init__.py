"""Runner hooks and the layer-wise lr decay optimizer constructor."""
from .dataset_check_hook import DatasetCheckHook
from .layer_decay import (ViTLayerDecayOptimWrapperConstructor, find_timm_vit,
                          vit_layer_ids)
from .optim_state_check_hook import OptimStateCheckHook
from .rng_state_hook import RNGStateHook

__all__ = [
    'DatasetCheckHook', 'OptimStateCheckHook', 'RNGStateHook',
    'ViTLayerDecayOptimWrapperConstructor', 'find_timm_vit', 'vit_layer_ids'
]
