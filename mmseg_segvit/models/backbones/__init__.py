"""Backbones."""
from .fused_vit import FusedVisionTransformer, sincos_pos_embed
from .shrunk_vit import ShrunkViT
from .timm_vit import TimmViT

__all__ = [
    'FusedVisionTransformer', 'ShrunkViT', 'TimmViT', 'sincos_pos_embed'
]
