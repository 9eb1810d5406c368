"""Backbones."""
from .fused_vit import FusedVisionTransformer
from .shrunk_vit import ShrunkViT
from .timm_vit import TimmViT

__all__ = ['FusedVisionTransformer', 'ShrunkViT', 'TimmViT']
