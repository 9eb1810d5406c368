"""Backbones."""
from .fused_vit import FusedVisionTransformer

__all__ = ['FusedVisionTransformer']
