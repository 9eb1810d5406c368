"""Small reusable layers of SegViT."""
from .atm_attention import ATMCrossAttention
from .atm_decoder import ATMDecoder, ATMDecoderLayer

__all__ = ['ATMCrossAttention', 'ATMDecoder', 'ATMDecoderLayer']
