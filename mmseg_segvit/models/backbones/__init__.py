"""Backbones."""

__all__ = []
