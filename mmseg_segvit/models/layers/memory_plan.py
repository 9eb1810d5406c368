"""How many output rows of the mask combination to compute at a time.

The faithful order of SegViT's inference (:mod:`.mask_combination`) resizes
every query's mask to the output size before combining them; for a batch of
ADE20K crops those transient (B, Q, H, W) masks and (B, K, H, W) scores take
gigabytes. :func:`plan_rows` decides how many output rows one band holds,
by device and size, following the project's rule for speed paths: they are
chosen by the device and the sizes at run time, never by a constant tuned on
one machine; on a GPU the limit is a memory budget, not a cache-sized chunk.

- CUDA: one piece (one resize, one sigmoid, one batched product) when the
  transient tensors fit a budget, a share (:data:`CUDA_MEMORY_FRACTION`) of
  the memory available on the device now; otherwise bands of output rows,
  as few and as large as the budget allows.
- CPU: bands whose resized masks fill one core's L2 cache, as the system
  reports it (:func:`cpu_band_bytes`).
- Other devices, and inside ``torch.compile`` (one graph: the compiler
  plans the memory): one piece.

:func:`memory_budget` overrides the budget in a context: tools that must
see the literal algorithm (FLOP counters, export) set it to
``float('inf')``. :func:`metric_budget` is the smaller budget of a metric
computed inside a training step.
"""
import contextlib
import functools
import glob
import math
import os
from typing import Iterator, Optional

import torch

from ...typing_utils import Size
from .sizes import traceable_size

__all__ = [
    'plan_rows', 'memory_budget', 'metric_budget', 'cpu_band_bytes',
    'CUDA_MEMORY_FRACTION', 'METRIC_MEMORY_FRACTION', 'DEFAULT_L2_CACHE_BYTES'
]

#: Share of the available CUDA memory (free on the device plus cached by
#: torch's allocator) that one combination may take. The rule: a
#: combination leaves most of the device to the model and to other work on
#: it; as a share of what is available now, the budget scales with the card
#: and with whatever else holds memory.
CUDA_MEMORY_FRACTION = 0.25
#: Share of the memory a training step already holds that the training-time
#: pixel accuracy may add on CUDA. The rule: a logged metric must not raise
#: the training memory peak noticeably (here by at most about 3%), and the
#: few extra launches of smaller bands cost less than that memory. The
#: budget scales with the step, so it holds for any model, batch and card.
METRIC_MEMORY_FRACTION = 1 / 32
#: CPU band budget where the system does not report an L2 size: the order
#: of magnitude of one core's L2 cache on current CPUs (a smaller or larger
#: band is only slower, never wrong).
DEFAULT_L2_CACHE_BYTES = 1 << 20
_CPU0_CACHE_DIR = '/sys/devices/system/cpu/cpu0/cache'
_CACHE_SIZE_UNITS = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}

# Set by memory_budget(); a plain global (not a ContextVar) so that
# torch.compile traces through it without a graph break.
_budget_from_context: Optional[float] = None


@functools.lru_cache(maxsize=None)
def cpu_band_bytes() -> int:
    """Bytes of resized masks per band on CPU: one core's L2 cache.

    Read from ``/sys/devices/system/cpu/cpu0/cache`` (Linux);
    :data:`DEFAULT_L2_CACHE_BYTES` where the system does not say.
    """
    for index in sorted(glob.glob(os.path.join(_CPU0_CACHE_DIR, 'index*'))):
        try:
            with open(os.path.join(index, 'level')) as f:
                level = int(f.read())
            with open(os.path.join(index, 'size')) as f:
                text = f.read().strip().upper()
        except (OSError, ValueError):
            continue
        if level != 2:
            continue
        try:
            if text[-1] in _CACHE_SIZE_UNITS:
                return int(text[:-1]) * _CACHE_SIZE_UNITS[text[-1]]
            return int(text)
        except (ValueError, IndexError):
            break
    return DEFAULT_L2_CACHE_BYTES


def _cuda_available_bytes(device: torch.device) -> int:
    """Free device memory plus memory torch holds cached but unused."""
    free, _ = torch.cuda.mem_get_info(device)
    cached = (
        torch.cuda.memory_reserved(device) -
        torch.cuda.memory_allocated(device))
    return free + cached


@contextlib.contextmanager
def memory_budget(nbytes: Optional[float]) -> Iterator[None]:
    """Override the memory budget of every combination in this context.

    Not thread-local: it applies to every thread while the context is open.

    Args:
        nbytes (float, optional): Bytes the transient tensors of one
            combination may take; ``float('inf')`` computes in one piece
            (the literal algorithm, as FLOP counters and exporters need);
            None restores the device default.
    """
    global _budget_from_context
    previous, _budget_from_context = _budget_from_context, nbytes
    try:
        yield
    finally:
        _budget_from_context = previous


def metric_budget(device: torch.device) -> Optional[float]:
    """Budget of a metric computed inside a training step.

    On CUDA at most :data:`METRIC_MEMORY_FRACTION` of the memory the step
    already holds (so a logged accuracy does not raise the training peak much);
    None (the device default) elsewhere, inside ``torch.compile`` or where
    :func:`memory_budget` is set.
    """
    if device.type == 'cuda' and _budget_from_context is None \
            and not torch.compiler.is_compiling():
        return METRIC_MEMORY_FRACTION * torch.cuda.memory_allocated(device)
    return None


def plan_rows(batch: int,
              mask_channels: int,
              out_channels: int,
              size: Size,
              device: torch.device,
              element_size: int = 4,
              budget: Optional[float] = None) -> int:
    """Rows per band for resizing (B, Q, h, w) masks to ``size``.

    Args:
        batch (int): B.
        mask_channels (int): Q, masks resized.
        out_channels (int): K, scores made from them (0 if none).
        size (tuple[int, int]): Output size (H, W).
        device (torch.device): Where the masks are.
        element_size (int): Bytes per element. Default: 4.
        budget (float, optional): Bytes the transient (B, Q + K, rows, W)
            tensors may take. Default: :func:`memory_budget` if set, else
            unbounded inside ``torch.compile`` (one graph), else the
            device's: on CUDA :data:`CUDA_MEMORY_FRACTION` of the
            available memory; on CPU the resized masks of a band fill
            :func:`cpu_band_bytes`; on other devices unbounded.

    Returns:
        int: Rows per band, between 1 and H; H means one piece. Bands are
        balanced: ``ceil(H / n)`` rows for the fewest bands ``n`` that fit.
    """
    height, width = traceable_size(size)
    if budget is None:
        budget = _budget_from_context
    if budget is None and torch.compiler.is_compiling():
        budget = math.inf  # one graph: the compiler plans the memory
    if budget is None:
        if device.type == 'cpu':
            budget = cpu_band_bytes()
            out_channels = 0  # the cached part is the resized masks
        elif device.type == 'cuda':
            budget = CUDA_MEMORY_FRACTION * _cuda_available_bytes(device)
        else:
            budget = math.inf
    row_bytes = batch * (mask_channels + out_channels) * width * element_size
    if height * row_bytes <= budget:
        return max(height, 1)
    rows_that_fit = max(1, int(budget // max(row_bytes, 1)))
    num_bands = math.ceil(height / rows_that_fit)
    return math.ceil(height / num_bands)
