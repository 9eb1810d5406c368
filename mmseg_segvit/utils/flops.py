"""FLOP counting on mmengine's fvcore-style analysis (1 multiply-add = 1).

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` (a port of fvcore's
``FlopCountAnalysis``) traces the model with the JIT tracer and counts each
traced ``aten`` op with a handle. It has no handle for the fused attention
ops that torch's own attention layers call in eval mode, so their attention
products would count 0. This module adds handles that count them as the
products they replace, so a count does not depend on the attention kernel:

- ``aten::scaled_dot_product_attention`` (``F.scaled_dot_product_attention``,
  also taken by ``nn.MultiheadAttention`` with ``need_weights=False``):
  ``q @ k^T`` and ``attn @ v``.
- ``aten::_native_multi_head_attention`` (the inference fast path of
  ``nn.MultiheadAttention`` for batch-first self-attention without
  gradients): its input projection, the two products and its output
  projection.

:data:`ACTIVATION_HANDLES` count their activations for mmengine's
``ActivationAnalyzer`` (which ``get_model_complexity_info`` runs too) as
the explicit path's ops would. :func:`register_flop_handles` adds both to
mmengine's default handle tables (only when called:
``python -m mmseg_segvit.tools.mmseg_tool get_flops`` calls it), so stock
tools built on ``get_model_complexity_info`` (``mim run mmsegmentation
get_flops``) count them too and warn only of ops no handle counts.
:func:`count_flops` counts one input and returns the total with a
per-module breakdown; :func:`flops_summary` groups that breakdown into the
rows of a segmentor (backbone / QD / QU / neck / decode head).
"""
from math import prod
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, complexity_analysis
from mmengine.analysis.jit_handles import get_shape
from torch import Tensor

from ..models.layers.memory_plan import memory_budget
from ..typing_utils import Size

__all__ = [
    'ACTIVATION_HANDLES', 'FLOP_HANDLES', 'FlopCount', 'count_flops',
    'flops_summary', 'native_mha_activation_jit', 'sdpa_activation_jit',
    'native_mha_flop_jit', 'register_flop_handles', 'sdpa_flop_jit'
]


def _shape(value: Any, op: str, what: str) -> List[int]:
    shape = get_shape(value)
    if shape is None:
        raise ValueError(f'{op}: the traced {what} has no complete shape; '
                         'cannot count its FLOPs')
    return list(shape)


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of ``aten::scaled_dot_product_attention``.

    Query (..., L, E), key (..., S, E), value (..., S, Ev): ``q @ k^T``
    costs ``L * S * E`` and ``attn @ v`` ``L * S * Ev`` multiply-adds per
    leading (batch, head) index, as the two explicit ``matmul`` ops count.
    Masks, scaling and the softmax are not counted (nor are they on the
    explicit path).
    """
    op = 'aten::scaled_dot_product_attention'
    q = _shape(inputs[0], op, 'query')
    k = _shape(inputs[1], op, 'key')
    v = _shape(inputs[2], op, 'value')
    batch = prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def native_mha_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of ``aten::_native_multi_head_attention``.

    Query (B, L, E), key/value (B, S, E): q projection ``B L E^2``, k and v
    projections ``2 B S E^2``, the two products ``2 B L S E`` (summed over
    heads) and the output projection ``B L E^2``: what the ``linear`` and
    ``bmm`` ops of ``nn.MultiheadAttention``'s explicit path count.
    """
    op = 'aten::_native_multi_head_attention'
    q = _shape(inputs[0], op, 'query')
    k = _shape(inputs[1], op, 'key')
    batch, length, dims = prod(q[:-2]), q[-2], q[-1]
    source = k[-2]
    proj = batch * dims * dims * (2 * length + 2 * source)
    return proj + 2 * batch * length * source * dims


def sdpa_activation_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Activations of ``aten::scaled_dot_product_attention``.

    What mmengine's ``ActivationAnalyzer`` counts for the explicit path: the
    outputs of its two ``matmul`` ops, the attention map (..., L, S) and the
    result (..., L, Ev).
    """
    op = 'aten::scaled_dot_product_attention'
    q = _shape(inputs[0], op, 'query')
    k = _shape(inputs[1], op, 'key')
    v = _shape(inputs[2], op, 'value')
    return prod(q[:-2]) * q[-2] * (k[-2] + v[-1])


def native_mha_activation_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Activations of ``aten::_native_multi_head_attention``.

    What mmengine's ``ActivationAnalyzer`` counts for
    ``nn.MultiheadAttention``'s explicit path: the q, k, v projections (``B L E
    + 2 B S E``), the attention maps of its ``num_heads`` heads (``B heads L
    S``), their product with v and the output projection (``2 B L E``).
    """
    op = 'aten::_native_multi_head_attention'
    q = _shape(inputs[0], op, 'query')
    k = _shape(inputs[1], op, 'key')
    heads = inputs[4].toIValue()
    if not isinstance(heads, int):
        raise ValueError(f'{op}: the number of heads is not a constant of '
                         'the traced graph; cannot count its activations')
    batch, length, dims = prod(q[:-2]), q[-2], q[-1]
    source = k[-2]
    return batch * (3 * length * dims + 2 * source * dims +
                    heads * length * source)


#: Handles this module adds to mmengine's FLOP analysis.
FLOP_HANDLES = {
    'aten::scaled_dot_product_attention': sdpa_flop_jit,
    'aten::_native_multi_head_attention': native_mha_flop_jit,
}
#: Handles this module adds to mmengine's activation analysis (which
#: ``get_model_complexity_info`` runs after the FLOP one).
ACTIVATION_HANDLES = {
    'aten::scaled_dot_product_attention': sdpa_activation_jit,
    'aten::_native_multi_head_attention': native_mha_activation_jit,
}


def register_flop_handles() -> None:
    """Add :data:`FLOP_HANDLES` and :data:`ACTIVATION_HANDLES` to mmengine's
    default handles.

    Every :class:`~mmengine.analysis.FlopAnalyzer` and
    :class:`~mmengine.analysis.ActivationAnalyzer` created afterwards (also
    inside ``get_model_complexity_info``) counts the fused attention ops, so
    neither reports them as unsupported; other ops without a handle are
    still reported. Handles mmengine already has for these ops are left
    alone. Idempotent.
    """
    for table, handles in (
        (complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS, FLOP_HANDLES),
        (complexity_analysis._DEFAULT_SUPPORTED_ACT_OPS, ACTIVATION_HANDLES),
    ):
        for name, handle in handles.items():
            table.setdefault(name, handle)


class FlopCount(NamedTuple):
    """Result of :func:`count_flops`.

    Attributes:
        total (int): FLOPs of the whole traced forward.
        by_module (dict[str, int]): FLOPs per module name (as in
            ``model.named_modules()``, '' is the model), each including its
            submodules.
        by_operator (dict[str, int]): FLOPs per op kind (``linear``,
            ``matmul``, ``scaled_dot_product_attention``, ...).
        unsupported (dict[str, int]): Ops without a handle (counted 0) and
            how often they ran: elementwise ops, softmax, ...
    """
    total: int
    by_module: Dict[str, int]
    by_operator: Dict[str, int]
    unsupported: Dict[str, int]


class _Inference(nn.Module):
    """Wraps a segmentor so that tracing runs its inference on one crop."""

    def __init__(self, segmentor: nn.Module, shape: Size) -> None:
        super().__init__()
        self.segmentor = segmentor
        self.metas = [dict(img_shape=shape, pad_shape=shape, ori_shape=shape)]

    def forward(self, inputs: Tensor) -> Tensor:
        return self.segmentor.encode_decode(inputs, self.metas)


def count_flops(model: nn.Module,
                shape: Optional[Sequence[int]] = None,
                *,
                inputs: Optional[Tensor] = None,
                mode: str = 'predict') -> FlopCount:
    """Count the FLOPs of one forward pass (fvcore convention).

    Args:
        model (nn.Module): A segmentor (mmseg ``EncoderDecoder``) or any
            module taking one (B, 3, H, W) tensor. It is put in eval mode.
        shape (Sequence[int], optional): (H, W) of one random image, or
            (C, H, W). Not with ``inputs``.
        inputs (Tensor, optional): The input batch, shape (B, C, H, W).
        mode (str): For segmentors: ``'predict'`` counts the inference of
            one crop (``encode_decode``: backbone, head, the mask resize to
            the crop and the per-class combination, as the official FLOP
            count did); ``'tensor'`` counts ``model(inputs, mode='tensor')``
            (backbone and head forward only, what ``mim run mmsegmentation
            get_flops`` counts). Other modules are called as
            ``model(inputs)``. Default: 'predict'.

    Returns:
        FlopCount: Total, per module, per operator, unsupported ops.
    """
    if (shape is None) == (inputs is None):
        raise ValueError('count_flops needs exactly one of shape or inputs')
    if mode not in ('predict', 'tensor'):
        raise ValueError(f"mode must be 'predict' or 'tensor', got {mode!r}")
    if inputs is None:
        shape = tuple(int(s) for s in shape)
        if len(shape) == 2:
            shape = (3, ) + shape
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f'shape must be (H, W) or (C, H, W) with sizes '
                             f'>= 1, got {shape}')
        param = next(model.parameters(), None)
        device = param.device if param is not None else 'cpu'
        inputs = torch.randn(1, *shape, device=device)
    model.eval()
    prefix = ''
    target: nn.Module = model
    if hasattr(model, 'encode_decode') and hasattr(model, 'extract_feat'):
        if mode == 'predict':
            target = _Inference(model, tuple(inputs.shape[-2:]))
            prefix = 'segmentor.'
    analyzer = FlopAnalyzer(target, (inputs, ))
    analyzer.set_op_handle(**FLOP_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    # one piece: the literal resize and combination, not the device's bands
    with torch.no_grad(), memory_budget(float('inf')):
        total = analyzer.total()
        by_module = analyzer.by_module()
        by_operator = analyzer.by_operator()
        unsupported = analyzer.unsupported_ops()
    if prefix:
        by_module = {
            name[len(prefix):]: flops
            for name, flops in by_module.items() if name.startswith(prefix)
        }
        by_module[''] = total
    by_module = {name: int(flops) for name, flops in by_module.items()}
    return FlopCount(
        int(total), by_module, dict(by_operator), dict(unsupported))


def flops_summary(model: nn.Module, count: FlopCount) -> List[Tuple[str, int]]:
    """Rows of a segmentor's FLOPs: backbone, QD, QU, neck, decode head.

    The backbone row excludes the QD layer and QU of a
    :class:`~mmseg_segvit.models.ShrunkViT`, which get their own rows; rows
    of parts a model does not have are left out. mmseg segmentors call the
    head's ``forward`` and ``predict_by_feat`` as methods, so the ops
    written in them (mask resizes, the class combination) are traced in the
    segmentor's scope, not the head's: the decode head row is everything
    outside the backbone and the neck. The last row is the total.

    Args:
        model (nn.Module): The counted segmentor.
        count (FlopCount): Its :func:`count_flops` result.

    Returns:
        list[tuple[str, int]]: ``(row name, FLOPs)`` pairs.
    """
    flops = count.by_module
    rows = []
    backbone = getattr(model, 'backbone', None)
    if backbone is not None:
        parts = []
        qd_index = getattr(backbone, 'qd_index', None)
        if qd_index is not None:
            parts.append((f'QD (backbone.layers.{qd_index})',
                          flops.get(f'backbone.layers.{qd_index}', 0)))
        if hasattr(backbone, 'qu'):
            parts.append(('QU (backbone.qu)', flops.get('backbone.qu', 0)))
        vit = flops.get('backbone', 0) - sum(f for _, f in parts)
        rows.append(
            ('backbone' if not parts else 'backbone (ViT layers)', vit))
        rows.extend(parts)
    if getattr(model, 'neck', None) is not None:
        rows.append(('neck', flops.get('neck', 0)))
    rest = count.total - sum(f for _, f in rows)
    if getattr(model, 'decode_head', None) is not None:
        rows.append(('decode_head', rest))
    elif rest:
        rows.append(('other', rest))
    rows.append(('total', count.total))
    return rows
