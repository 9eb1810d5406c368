"""Per-class scores or labels from ATM class logits and mask logits.

SegViT's inference (official ``ATMHead.semantic_inference`` after the mask
resize of ``ATMHead.forward``, zbwxp/SegVit ``decode_heads/atm_head.py``)
resizes every query's mask logits to the output size, takes their sigmoid
and sums them weighted by the class probabilities::

    einsum('bqc,bqhw->bchw', softmax(cls)[..., :K], sigmoid(resize(m)))

:func:`combine` is the one place that computes it, in either order
(``'faithful'``: resize the masks, then combine; ``'fast'``: combine near
mask resolution, then resize the K scores) and as either output
(``'scores'``: (B, K, H, W); ``'labels'``: their (B, H, W) arg-max, what a
pixel accuracy needs).

How the resized masks are chunked is chosen by device and size
(:func:`plan_rows`), never by a constant tuned on one machine:

- CUDA: one piece (one resize, one sigmoid, one batched product) when the
  transient tensors fit a memory budget, a share of the device memory that
  is free now (:data:`CUDA_MEMORY_FRACTION`); otherwise bands of output
  rows, as few and as large as the budget allows.
- CPU: bands whose resized masks fill about one core's L2 cache (read from
  the system, :func:`cpu_band_bytes`): the height resize is done once on a
  small (B, Q, H, w) tensor and each band is resized along the width while
  it is in cache.

Bilinear resizing is separable, so a band of rows resized along the height
then the width equals the same rows of the full resize (within float
rounding). Tools that must see the literal algorithm (FLOP counters, export)
set :func:`memory_budget` to ``float('inf')``: one piece, one
``F.interpolate``.
"""
import contextlib
import functools
import glob
import math
import os
from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...typing_utils import Size
from .amp import autocast_enabled

__all__ = [
    'combine', 'class_probabilities', 'plan_rows', 'memory_budget',
    'cpu_band_bytes', 'metric_budget', 'resize_in_bands',
    'combine_resized_masks', 'combined_labels', 'resized_labels',
    'traceable_size', 'CUDA_MEMORY_FRACTION'
]

#: Share of the available CUDA memory (free on the device plus cached by
#: torch's allocator) that one combination may take.
CUDA_MEMORY_FRACTION = 0.25
#: Share of the memory a training step already holds that the training-time
#: pixel accuracy (a logged metric) may add on CUDA. At 1/8 the ViT-B step
#: (H200, bf16, batch 8) peaked 1.2 GB above the banded code's 6.7 GB; 1/32
#: bounds that at about 0.25 GB for a dozen more small launches.
METRIC_MEMORY_FRACTION = 1 / 32
_FALLBACK_CACHE_BYTES = 1 << 20

# Set by memory_budget(); a plain global (not a ContextVar) so that
# torch.compile traces through it without a graph break.
_budget_override: Optional[float] = None



def traceable_size(size: Size) -> Size:
    """``size`` (H, W) as Python ints; as given while a graph is traced or
    compiled (ONNX export), where ``int()`` would bake the example's size
    into the graph."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return size[0], size[1]
    return int(size[0]), int(size[1])


@functools.lru_cache(maxsize=None)
def cpu_band_bytes() -> int:
    """Bytes of resized masks per band on CPU: one core's L2 cache.

    Read from ``/sys/devices/system/cpu/cpu0/cache`` (Linux); 1 MiB where
    the system does not say.
    """
    for index in sorted(glob.glob('/sys/devices/system/cpu/cpu0/cache/index*')):
        try:
            with open(os.path.join(index, 'level')) as f:
                level = int(f.read())
            with open(os.path.join(index, 'size')) as f:
                text = f.read().strip().upper()
        except (OSError, ValueError):
            continue
        if level != 2:
            continue
        units = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}
        try:
            if text[-1] in units:
                return int(text[:-1]) * units[text[-1]]
            return int(text)
        except (ValueError, IndexError):
            break
    return _FALLBACK_CACHE_BYTES


def _cuda_available_bytes(device: torch.device) -> int:
    """Free device memory plus memory torch holds cached but unused."""
    free, _ = torch.cuda.mem_get_info(device)
    cached = (torch.cuda.memory_reserved(device) -
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
    global _budget_override
    previous, _budget_override = _budget_override, nbytes
    try:
        yield
    finally:
        _budget_override = previous


def metric_budget(device: torch.device) -> Optional[float]:
    """Budget of a metric computed inside a training step.

    On CUDA at most :data:`METRIC_MEMORY_FRACTION` of the memory the step
    already holds (so a logged accuracy does not raise the training peak
    much); None (the device default) elsewhere.
    """
    if device.type == 'cuda' and _budget_override is None \
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
        budget = _budget_override
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
    rows = max(1, int(budget // max(row_bytes, 1)))
    bands = math.ceil(height / rows)
    return math.ceil(height / bands)


def resize_in_bands(maps: Tensor,
                    size: Size,
                    align_corners: bool = False,
                    rows: Optional[int] = None) -> Iterator[Tuple[int, int,
                                                                  Tensor]]:
    """Yield ``F.interpolate(maps, size, mode='bilinear')`` by row bands.

    Args:
        maps (Tensor): Maps to resize, shape (B, C, h, w).
        size (tuple[int, int]): Output size (H, W).
        align_corners (bool): As in ``F.interpolate``. Default: False.
        rows (int, optional): Output rows per band; H (one piece, a single
            ``F.interpolate``) if None.

    Yields:
        tuple: ``(top, bottom, band)`` with ``band`` of shape
        (B, C, bottom - top, W), equal within float rounding to rows
        ``top:bottom`` of the resized maps. A band may be ``maps`` itself or
        share memory with it: do not modify it in place.
    """
    _, _, h, w = maps.shape
    out_h, out_w = traceable_size(size)
    rows = out_h if rows is None else max(1, min(out_h, int(rows)))
    if rows >= out_h:
        yield 0, out_h, maps if (h, w) == (out_h, out_w) else F.interpolate(
            maps, size=(out_h, out_w), mode='bilinear',
            align_corners=align_corners)
        return
    # along the height only: (B, C, H, w), small; a resize that keeps an
    # axis's size leaves that axis as it is
    tall = maps if h == out_h else F.interpolate(
        maps, size=(out_h, w), mode='bilinear', align_corners=align_corners)
    for top in range(0, out_h, rows):
        bottom = min(out_h, top + rows)
        band = tall[:, :, top:bottom]
        if w != out_w:  # along the width only
            band = F.interpolate(
                band,
                size=(bottom - top, out_w),
                mode='bilinear',
                align_corners=align_corners)
        yield top, bottom, band


def class_probabilities(cls_logits: Tensor) -> Tensor:
    """``softmax(cls_logits)`` without the "no object" column.

    Args:
        cls_logits (Tensor): (B, Q, K + 1).

    Returns:
        Tensor: (B, Q, K).
    """
    return F.softmax(cls_logits, dim=-1)[..., :-1]


def _compute_dtype(cls_prob: Tensor, mask_logits: Tensor) -> torch.dtype:
    """The dtype the resize, sigmoid and product run in.

    Under autocast the masks' own dtype: the official head resizes the
    (bf16 / fp16) masks autocast gives it and its einsum runs in the
    autocast dtype, so upcasting the (B, Q, H, W) masks to the fp32 of the
    class softmax (an autocast fp32 op on CUDA) would only double their
    memory and traffic. Otherwise the promoted dtype of the inputs.
    """
    if autocast_enabled(mask_logits.device):
        return mask_logits.dtype
    return torch.promote_types(cls_prob.dtype, mask_logits.dtype)


def _weighted_sum(weights: Tensor, masks: Tensor, fresh: bool) -> Tensor:
    """(B, K, Q) @ sigmoid((B, Q, r, W)) -> (B, K, r, W).

    ``fresh``: ``masks`` is a temporary that may be overwritten.
    """
    prob = masks.sigmoid_() if fresh else masks.sigmoid()
    # reshape, not unflatten: keeps (r, W) symbolic in ONNX exports
    return torch.bmm(weights, prob.flatten(2)).reshape(
        weights.shape[0], weights.shape[1], masks.shape[2], masks.shape[3])


def _combine_bands(cls_prob: Tensor, mask_logits: Tensor, size: Size,
                   align_corners: bool,
                   rows: Optional[int]) -> Iterator[Tuple[int, int, Tensor]]:
    """Yield ``(top, bottom, scores)`` with scores (B, K, rows, W)."""
    b, q = mask_logits.shape[:2]
    if cls_prob.shape[:2] != (b, q):
        raise ValueError(f'cls_prob {tuple(cls_prob.shape)} and mask_logits '
                         f'{tuple(mask_logits.shape)} differ in batch or '
                         'query count')
    dtype = _compute_dtype(cls_prob, mask_logits)
    weights = cls_prob.to(dtype).transpose(1, 2)  # (B, K, Q)
    masks = mask_logits.to(dtype)
    in_place = not (torch.is_grad_enabled() and masks.requires_grad)
    for top, bottom, band in resize_in_bands(masks, size, align_corners,
                                             rows):
        fresh = in_place and band is not masks and band._base is None
        yield top, bottom, _weighted_sum(weights, band, fresh)


def _rows(cls_prob: Tensor, mask_logits: Tensor, size: Size,
          rows: Optional[int], budget: Optional[float]) -> int:
    if rows is not None:
        return rows
    if torch.is_grad_enabled() and (cls_prob.requires_grad
                                    or mask_logits.requires_grad):
        return int(size[0])  # differentiable: the literal one piece
    dtype = _compute_dtype(cls_prob, mask_logits)
    return plan_rows(mask_logits.shape[0], mask_logits.shape[1],
                     cls_prob.shape[2], size, mask_logits.device,
                     dtype.itemsize, budget)


def combine_resized_masks(cls_prob: Tensor,
                          mask_logits: Tensor,
                          size: Size,
                          align_corners: bool = False,
                          rows: Optional[int] = None,
                          budget: Optional[float] = None) -> Tensor:
    """``einsum('bqc,bqhw->bchw', cls_prob, sigmoid(resize(mask_logits)))``.

    The resize is bilinear to ``size`` (as ``F.interpolate`` with
    ``mode='bilinear'``); the result equals the literal computation within
    float rounding. Differentiable (computed in one piece when gradients
    are wanted).

    Args:
        cls_prob (Tensor): Class probabilities, shape (B, Q, K).
        mask_logits (Tensor): Mask logits, shape (B, Q, h, w).
        size (tuple[int, int]): Output size (H, W).
        align_corners (bool): As in ``F.interpolate``. Default: False.
        rows (int, optional): Rows per band; planned by :func:`plan_rows`
            if None.
        budget (float, optional): Memory budget of :func:`plan_rows`.

    Returns:
        Tensor: Scores of shape (B, K, H, W).

    Raises:
        ValueError: If the inputs differ in batch or query count.
    """
    rows = _rows(cls_prob, mask_logits, size, rows, budget)
    if rows >= size[0]:
        return next(_combine_bands(cls_prob, mask_logits, size,
                                   align_corners, rows))[2]
    dtype = _compute_dtype(cls_prob, mask_logits)
    out = mask_logits.new_empty(
        mask_logits.shape[0], cls_prob.shape[2], *size, dtype=dtype)
    for top, bottom, scores in _combine_bands(cls_prob, mask_logits, size,
                                              align_corners, rows):
        out[:, :, top:bottom] = scores
    return out


def combined_labels(cls_prob: Tensor,
                    mask_logits: Tensor,
                    size: Size,
                    align_corners: bool = False,
                    rows: Optional[int] = None,
                    budget: Optional[float] = None) -> Tensor:
    """Arg-max over classes of :func:`combine_resized_masks`, (B, H, W).

    With bands, neither the resized masks nor the scores exist in full.
    Same arguments as :func:`combine_resized_masks`.
    """
    rows = _rows(cls_prob, mask_logits, size, rows, budget)
    bands = _combine_bands(cls_prob, mask_logits, size, align_corners, rows)
    if rows >= size[0]:
        return next(bands)[2].argmax(1)
    out = mask_logits.new_empty(
        mask_logits.shape[0], *size, dtype=torch.long)
    for top, bottom, scores in bands:
        out[:, top:bottom] = scores.argmax(1)
    return out


def resized_labels(scores: Tensor,
                   size: Size,
                   align_corners: bool = False,
                   rows: Optional[int] = None,
                   budget: Optional[float] = None) -> Tensor:
    """Arg-max over channels of bilinearly resized scores, (B, H, W).

    Args:
        scores (Tensor): (B, K, h, w).
        size (tuple[int, int]): Output size (H, W).
        align_corners (bool): As in ``F.interpolate``. Default: False.
        rows (int, optional): Rows per band; planned if None.
        budget (float, optional): Memory budget of :func:`plan_rows`.
    """
    if rows is None:
        rows = plan_rows(scores.shape[0], scores.shape[1], 0, size,
                         scores.device, scores.dtype.itemsize, budget)
    bands = resize_in_bands(scores, size, align_corners, rows)
    if rows >= size[0]:
        return next(bands)[2].argmax(1)
    out = scores.new_empty(scores.shape[0], *size, dtype=torch.long)
    for top, bottom, band in bands:
        out[:, top:bottom] = band.argmax(1)
    return out


def _fast_grid(mask_grid: Size, size: Size, scale: int) -> Size:
    """``fast_scale`` times the mask grid, at most ``size``, per axis.

    While a graph is traced (ONNX export) the sizes are traced values and
    the minimum is one of the graph's ops (a Python ``min`` would record
    the branch the example took); under ``torch.export`` / ``torch.compile``
    it is ``torch.sym_min`` of the symbolic sizes.
    """
    if torch.jit.is_tracing():
        return tuple(
            torch.minimum(torch.as_tensor(n) * scale, torch.as_tensor(m))
            for n, m in zip(mask_grid, size))
    return tuple(torch.sym_min(n * scale, m) for n, m in zip(mask_grid, size))


def combine(cls_logits: Tensor,
            mask_logits: Tensor,
            size: Size,
            *,
            order: str = 'faithful',
            output: str = 'scores',
            fast_scale: int = 4,
            align_corners: bool = False,
            budget: Optional[float] = None) -> Tensor:
    """Per-class scores (or their arg-max) of SegViT's inference at ``size``.

    Args:
        cls_logits (Tensor): Class logits, (B, Q, K + 1); the last class is
            "no object".
        mask_logits (Tensor): Mask logits, (B, Q, h, w).
        size (tuple[int, int]): Output size (H, W).
        order (str): ``'faithful'``: resize the masks to ``size``, then
            combine (the official order). ``'fast'``: resize the masks to
            ``fast_scale`` times their grid (at most ``size``), combine
            there, then resize the (B, K, h', w') scores to ``size``: much
            cheaper; the arg-max agrees on most but not all pixels.
            Default: 'faithful'.
        output (str): ``'scores'``: (B, K, H, W). ``'labels'``: the (B, H, W)
            arg-max over K, computed without holding the full scores where
            memory is short. Default: 'scores'.
        fast_scale (int): See ``order``. Default: 4.
        align_corners (bool): Of every bilinear resize. Default: False.
        budget (float, optional): Bytes the transient tensors may take;
            see :func:`plan_rows`. Default: the device's.

    Returns:
        Tensor: (B, K, H, W) scores in the promoted dtype of the inputs
        (under autocast: the masks' dtype, or autocast's where the product
        casts), or (B, H, W) long labels.

    Raises:
        ValueError: On an unknown ``order`` / ``output``, ``fast_scale`` < 1
            or inputs that differ in batch or query count.
    """
    if order not in ('faithful', 'fast'):
        raise ValueError(f"order must be 'faithful' or 'fast', got {order!r}")
    if output not in ('scores', 'labels'):
        raise ValueError(
            f"output must be 'scores' or 'labels', got {output!r}")
    if fast_scale < 1:
        raise ValueError(f'fast_scale must be >= 1, got {fast_scale}')
    size = traceable_size(size)
    cls_prob = class_probabilities(cls_logits)
    if order == 'faithful':
        fn = combine_resized_masks if output == 'scores' else combined_labels
        return fn(cls_prob, mask_logits, size, align_corners, budget=budget)
    grid = _fast_grid(mask_logits.shape[-2:], size, fast_scale)
    low = combine_resized_masks(
        cls_prob, mask_logits, grid, align_corners, rows=grid[0])
    if output == 'labels':
        return resized_labels(low, size, align_corners, budget=budget)
    if tuple(low.shape[-2:]) == tuple(size):
        return low
    return F.interpolate(
        low, size=size, mode='bilinear', align_corners=align_corners)
