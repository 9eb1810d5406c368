"""Loading and converting checkpoints: released SegViT models, timm ViTs."""
from .official_segvit import (ATM_RULES, DROPPED_KEYS, ConversionError,
                              ViTInfo, convert_official_state_dict,
                              describe_model, describe_official,
                              rename_official_keys)
from .safe_load import (UnsafeCheckpointError, get_state_dict,
                        load_weights_file)

__all__ = [
    'ATM_RULES', 'DROPPED_KEYS', 'ConversionError', 'ViTInfo',
    'convert_official_state_dict', 'describe_model', 'describe_official',
    'rename_official_keys', 'UnsafeCheckpointError', 'get_state_dict',
    'load_weights_file'
]
