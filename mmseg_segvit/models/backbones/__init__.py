"""Backbones."""
from .fused_vit import FusedVisionTransformer
from .shrunk_vit import ShrunkViT

__all__ = ['FusedVisionTransformer', 'ShrunkViT']
