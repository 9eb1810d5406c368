"""Runner hooks and the layer-wise lr decay optimizer constructor."""
from .layer_decay import (ViTLayerDecayOptimWrapperConstructor, find_timm_vit,
                          vit_layer_ids)
from .rng_state_hook import RNGStateHook

__all__ = [
    'RNGStateHook', 'ViTLayerDecayOptimWrapperConstructor', 'find_timm_vit',
    'vit_layer_ids'
]
