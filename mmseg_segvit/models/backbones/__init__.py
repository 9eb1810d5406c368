"""Backbones."""
from .fused_vit import FusedVisionTransformer, sincos_pos_embed
from .shrunk_vit import ShrunkViT

__all__ = ['FusedVisionTransformer', 'ShrunkViT', 'sincos_pos_embed']
