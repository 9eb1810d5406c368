"""Backbones."""
from .shrunk_vit import ShrunkViT

__all__ = ['ShrunkViT']
