"""Small reusable layers of SegViT."""
from .atm_attention import ATMCrossAttention
from .atm_decoder import ATMDecoder, ATMDecoderLayer
from .query_downsample import QDEncoderLayer, stride2_grid_tokens
from .query_upsample import QueryUpsample

__all__ = [
    'ATMCrossAttention', 'ATMDecoder', 'ATMDecoderLayer', 'QDEncoderLayer',
    'QueryUpsample', 'stride2_grid_tokens'
]
