"""Small reusable layers of SegViT."""
from .atm_attention import ATMCrossAttention
from .atm_decoder import ATMDecoder, ATMDecoderLayer, build_cross_attention
from .fused_mha import (FusedMultiheadAttention, packed_self_attention,
                        set_fused_attn, use_fused_attn)
from .kmeans_attention import KMeansCrossAttention
from .level_projection import build_level_projections, level_channels
from .mask_combination import (combine, combine_resized_masks, combined_labels,
                               resize_in_bands, resized_labels)
from .memory_plan import memory_budget, plan_rows
from .query_downsample import QDEncoderLayer, stride2_grid_tokens
from .query_upsample import QueryUpsample, cell_distances
from .vit_layer import ViTEncoderLayer, ViTFFN, build_vit_layers, vit_arguments
from .weight_casts import (batched_weight_casts, get_batched_weight_casts,
                           set_batched_weight_casts)

__all__ = [
    'ATMCrossAttention', 'ATMDecoder', 'ATMDecoderLayer',
    'build_cross_attention', 'FusedMultiheadAttention',
    'packed_self_attention', 'KMeansCrossAttention', 'QDEncoderLayer',
    'QueryUpsample', 'cell_distances', 'build_level_projections',
    'level_channels', 'set_fused_attn', 'use_fused_attn', 'ViTEncoderLayer',
    'ViTFFN', 'build_vit_layers', 'vit_arguments', 'stride2_grid_tokens',
    'combine', 'combine_resized_masks', 'combined_labels', 'memory_budget',
    'plan_rows', 'resize_in_bands', 'resized_labels', 'batched_weight_casts',
    'get_batched_weight_casts', 'set_batched_weight_casts'
]
