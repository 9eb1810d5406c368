"""Small reusable layers of SegViT."""
from .atm_attention import ATMCrossAttention
from .atm_decoder import ATMDecoder, ATMDecoderLayer
from .fused_mha import FusedMultiheadAttention, fuse_multihead_attention
from .kmeans_attention import KMeansCrossAttention
from .mask_combination import (combine, combine_resized_masks,
                               combined_labels, memory_budget, plan_rows,
                               resize_in_bands, resized_labels)
from .query_downsample import QDEncoderLayer, stride2_grid_tokens
from .query_upsample import QueryUpsample

__all__ = [
    'ATMCrossAttention', 'ATMDecoder', 'ATMDecoderLayer',
    'FusedMultiheadAttention', 'KMeansCrossAttention', 'QDEncoderLayer',
    'QueryUpsample', 'fuse_multihead_attention', 'stride2_grid_tokens',
    'combine', 'combine_resized_masks', 'combined_labels', 'memory_budget',
    'plan_rows', 'resize_in_bands', 'resized_labels'
]
