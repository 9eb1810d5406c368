"""Autocast's weight casts of one inference call in one multi-tensor copy.

Under ``torch.autocast`` every matrix product casts its fp32 weight (and bias)
to the autocast dtype, one small kernel per tensor, and autocast keeps the
casts only until its region ends; MMSeg's test loop and inferencer enter one
region per batch. A ViT-B SegViT inference thus launches about 250 cast kernels
beside about 580 others, on a GPU where inference is launch-bound at small and
moderate batches. Here the module's casts are made by one
``torch._foreach_copy_`` into low-precision buffers kept while the module stays
in eval mode (a few multi-tensor kernels on CUDA), and the module runs with
those buffers in place of its weights: the same values autocast would give (the
same fp32 -> bf16 / fp16 rounding), so the same outputs.
"""
import contextlib
from typing import Iterator, List, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .amp import autocast_enabled

__all__ = [
    'batched_weight_casts', 'get_batched_weight_casts',
    'set_batched_weight_casts'
]

# Off by default: the batching was never measured on a GPU, where alone it
# could pay (benchmarks/gpu_checks.sh measures it beside the default); a
# default changes only with a GPU measurement that shows it pays.
_ENABLED: Optional[bool] = False
_STATE = '_batched_weight_casts'


def set_batched_weight_casts(enable: Optional[bool] = False) -> None:
    """Where :func:`batched_weight_casts` batches the casts: False (the
    default) nowhere: autocast casts each weight itself on every call and no
    low-precision copy is kept between calls (ViT-B's is 172 MB in bf16); None
    for modules on CUDA, where inference is launch-bound; True on every device
    (a CPU loops over the tensors anyway, so there it only keeps the copies).
    Nothing else changes global state.

    Args:
        enable (bool, optional): See above. Default: False.
    """
    global _ENABLED
    _ENABLED = None if enable is None else bool(enable)


def get_batched_weight_casts() -> Optional[bool]:
    """The current setting of :func:`set_batched_weight_casts` (to restore it
    after a temporary change)."""
    return _ENABLED


class _Casts(NamedTuple):
    slots: List[Tuple[dict, str]]  # (module._parameters, name)
    params: List[Tensor]
    data_ptrs: List[int]  # the params' memory when the buffers were made
    casts: List[Tensor]
    dtype: torch.dtype
    inference_mode: bool
    with_mha: bool
    stream: Optional[torch.cuda.Stream]

    def fits(self, dtype: torch.dtype,
             stream: Optional[torch.cuda.Stream]) -> bool:
        """Whether the buffers still serve ``module``: same dtype, inference
        mode and stream, the same fp32 parameter objects over the same memory
        (a move to another device, ``.double()`` or a memory-format change
        gives new memory: buffers laid out as autocast's casts)."""
        return (self.dtype == dtype
                and self.inference_mode == torch.is_inference_mode_enabled()
                and self.with_mha == _mha_in_autocast()
                and self.stream == stream and all(
                    d.get(name) is p and p.data_ptr() == ptr
                    and p.dtype == torch.float32 for (d, name), p, ptr in zip(
                        self.slots, self.params, self.data_ptrs)))


def _current_stream(device: torch.device) -> Optional[torch.cuda.Stream]:
    """The stream the buffers are written and read on, None off CUDA.

    The
    buffers are rewritten on every call, so they must not be shared by two
    streams: a call on another stream could overwrite them while kernels
    of the previous call still read them (autocast's own casts are new
    tensors, ordered by the caching allocator).
    """
    return torch.cuda.current_stream(device) \
        if device.type == 'cuda' else None


def _mha_in_autocast() -> bool:
    """Whether ``nn.MultiheadAttention`` runs its projections under autocast.

    Its eval-mode fast path (torch's native kernel, in the weights' dtype) is
    off only under CUDA autocast (``torch. is_autocast_enabled()``); elsewhere
    it may run in fp32 with the fp32 weights, which low-precision copies would
    change.
    """
    return torch.is_autocast_enabled()


def _cast_slots(module: nn.Module,
                device: torch.device) -> List[Tuple[dict, str]]:
    """``(module._parameters, name)`` of every fp32 parameter on ``device``
    that autocast casts to its low-precision dtype: the weights and biases of
    linear and convolution layers and the input projections of
    ``nn.MultiheadAttention`` (its output projection is a Linear; both only
    where :func:`_mha_in_autocast`).

    Norms, embeddings and position tables run in fp32 and are left alone.
    """
    skip = set()
    if not _mha_in_autocast():
        for sub in module.modules():
            if isinstance(sub, nn.MultiheadAttention):
                skip.update(id(m) for m in sub.modules())
    slots = []
    for sub in module.modules():
        if id(sub) in skip:
            continue
        if isinstance(sub, (nn.Linear, nn.modules.conv._ConvNd)):
            names: Tuple[str, ...] = ('weight', 'bias')
        elif isinstance(sub, nn.MultiheadAttention):
            names = ('in_proj_weight', 'in_proj_bias', 'q_proj_weight',
                     'k_proj_weight', 'v_proj_weight')
        else:
            continue
        for name in names:
            p = sub._parameters.get(name)
            if p is not None and p.dtype == torch.float32 \
                    and p.device == device:
                slots.append((sub._parameters, name))
    return slots


def _cast_target(
        module: nn.Module) -> Optional[Tuple[torch.dtype, torch.device]]:
    """The dtype to cast to and the parameters' device, or None where the casts
    are not batched:

    training, gradients enabled (the casts must stay differentiable), tracing
    or compiling (the compiler fuses the casts itself), no autocast on the
    parameters' device, a device other than CUDA unless switched on everywhere,
    or switched off (:func:`set_batched_weight_casts`).
    """
    if (_ENABLED is False or module.training or torch.is_grad_enabled()
            or torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.compiler.is_compiling()):
        return None
    param = next(module.parameters(), None)
    if param is None or (_ENABLED is None and param.device.type != 'cuda'):
        return None
    if not autocast_enabled(param.device):  # also False on e.g. meta
        return None
    return torch.get_autocast_dtype(param.device.type), param.device


@contextlib.contextmanager
def batched_weight_casts(module: nn.Module) -> Iterator[None]:
    """Run the body with ``module``'s autocast weight casts made at once.

    At inference (eval mode, no gradients) under autocast, where
    :func:`set_batched_weight_casts` switches it on (off by default; None:
    on CUDA; True: every device), the fp32
    weights listed by :func:`_cast_slots` are copied into low-precision
    buffers by one ``torch._foreach_copy_`` and put in their place for the
    body; the originals are back afterwards, also on an error. The buffers
    stay with the module while it is in eval mode and are dropped by the
    first call outside these conditions (a training step). Elsewhere
    (training, gradients on, no autocast, tracing, compiling, another
    device, switched off) the body runs unchanged.

    Every call copies the current weights, so in-place updates (an
    optimizer step, EMA swaps through ``.data``) are always seen.

    Args:
        module (nn.Module): The module whose ``forward`` runs in the body.
    """
    state = module.__dict__
    target = _cast_target(module)
    if target is None or state.get(_STATE + '_active'):
        if target is None:
            state.pop(_STATE, None)
        yield
        return
    dtype, device = target
    stream = _current_stream(device)
    entry: Optional[_Casts] = state.get(_STATE)
    if entry is None or not entry.fits(dtype, stream):
        slots = _cast_slots(module, device)
        params = [d[name] for d, name in slots]
        entry = _Casts(slots, params, [p.data_ptr() for p in params],
                       [torch.empty_like(p, dtype=dtype) for p in params],
                       dtype, torch.is_inference_mode_enabled(),
                       _mha_in_autocast(), stream)
        state[_STATE] = entry
    if entry.params:
        torch._foreach_copy_(entry.casts, entry.params)
    for (d, name), cast in zip(entry.slots, entry.casts):
        d[name] = cast
    state[_STATE + '_active'] = True
    try:
        yield
    finally:
        for (d, name), p in zip(entry.slots, entry.params):
            d[name] = p
        state[_STATE + '_active'] = False
