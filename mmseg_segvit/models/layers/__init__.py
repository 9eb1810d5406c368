"""Small reusable layers of SegViT."""
from .atm_attention import ATMCrossAttention
from .atm_decoder import ATMDecoder, ATMDecoderLayer
from .fused_mha import FusedMultiheadAttention, fuse_multihead_attention

__all__ = [
    'ATMCrossAttention', 'ATMDecoder', 'ATMDecoderLayer',
    'FusedMultiheadAttention', 'fuse_multihead_attention'
]
