"""Loading and converting checkpoints: released SegViT models, timm ViTs."""
from .dataset_meta import (checkpoint_dataset_meta, config_dataset_meta,
                           converted_dataset_meta)
from .layout import OFFICIAL, PACKAGE, require_package_layout, segvit_layout
from .official_segvit import (ATM_RULES, DROPPED_KEYS, SHRUNK_RULES,
                              ConversionError, ViTInfo,
                              convert_official_state_dict, describe_model,
                              describe_official, is_shrunk_official,
                              rename_official_keys)
from .pos_embed import GRIDS_KEY, RELEASED_GRIDS, resize_pos_embed, source_grid
from .safe_load import UnsafeCheckpointError, get_state_dict, load_weights_file
from .timm_backbone import (TimmPretrained, convert_timm_backbone,
                            load_timm_backbone, read_backbone_file)
from .timm_vit import (ViTPretrained, checkpoint_layout,
                       convert_pretrained_vit, load_pretrained_vit,
                       recorded_grids, vit2mmseg_converter)
from .vit_keys import VIT_KEY

__all__ = [
    'ATM_RULES', 'SHRUNK_RULES', 'is_shrunk_official', 'DROPPED_KEYS',
    'ConversionError', 'ViTInfo', 'convert_official_state_dict',
    'describe_model', 'describe_official', 'rename_official_keys',
    'UnsafeCheckpointError', 'get_state_dict', 'load_weights_file', 'VIT_KEY',
    'ViTPretrained', 'checkpoint_layout', 'convert_pretrained_vit',
    'load_pretrained_vit', 'vit2mmseg_converter', 'RELEASED_GRIDS',
    'resize_pos_embed', 'source_grid', 'GRIDS_KEY', 'recorded_grids',
    'OFFICIAL', 'PACKAGE', 'require_package_layout', 'segvit_layout',
    'config_dataset_meta', 'converted_dataset_meta', 'checkpoint_dataset_meta',
    'TimmPretrained', 'convert_timm_backbone', 'load_timm_backbone',
    'read_backbone_file'
]
