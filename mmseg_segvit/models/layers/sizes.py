"""Output sizes that stay symbolic while a graph is traced."""
import torch

from ...typing_utils import Size

__all__ = ['traceable_size']


def traceable_size(size: Size) -> Size:
    """``size`` (H, W) as Python ints; as given while a graph is traced or
    compiled (ONNX export), where ``int()`` would bake the example's size into
    the graph."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return size[0], size[1]
    return int(size[0]), int(size[1])
