"""Autocast state and switch-off that also take devices without autocast.

``torch.is_autocast_enabled(device_type)`` and ``torch.autocast(device_type,
enabled=False)`` raise a ``RuntimeError`` for a device type that has no
autocast, such as ``'meta'`` (a model moved there to count FLOPs or check
shapes without memory). There, autocast is simply off.
"""
import contextlib
from typing import ContextManager

import torch

__all__ = ['autocast_enabled', 'autocast_disabled']


def autocast_enabled(device: torch.device) -> bool:
    """Whether autocast is on for ``device``'s type (False where the type has
    no autocast, e.g. ``meta``)."""
    return (torch.amp.is_autocast_available(device.type)
            and torch.is_autocast_enabled(device.type))


def autocast_disabled(device: torch.device) -> ContextManager:
    """A context with autocast off for ``device``'s type (a no-op where the
    type has no autocast)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()
