"""Type aliases shared across the package (as ``mmseg.utils.typing_utils``).

``Grid``: a token grid (h, w), in patches or tokens. ``Size``: an image or
map size (H, W) in pixels. ``StateDict``: model weights by key.
"""
from typing import Dict, Tuple

from torch import Tensor

__all__ = ['Grid', 'Size', 'StateDict']

Grid = Tuple[int, int]
Size = Tuple[int, int]
StateDict = Dict[str, Tensor]
