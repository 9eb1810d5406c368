"""Small reusable layers of SegViT."""
from .atm_attention import ATMCrossAttention
from .atm_decoder import ATMDecoder, ATMDecoderLayer
from .kmeans_attention import KMeansCrossAttention

__all__ = [
    'ATMCrossAttention', 'ATMDecoder', 'ATMDecoderLayer',
    'KMeansCrossAttention'
]
