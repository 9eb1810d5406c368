"""Operator counts of one inference and one training step, per model.

A GPU runs one kernel (or a few) per leaf ``aten`` operator, so on a
launch-bound GPU the operator count of a step sets its wall time. The
count does not depend on the device: ``torch.profiler`` on the CPU counts
the operators a GPU would launch, provided the computation is chunked as on
the GPU. On the CPU this script therefore computes the mask combination in
one piece (``memory_budget(inf)``, what a GPU does when the tensors fit)
and, where the batched weight casts are switched on (off by default; the
``*-casts`` models of ``benchmarks.common.SPECS`` switch them on), batches
them as CUDA would, unless ``--device-chunking`` asks for what the CPU
itself does. On CUDA it also counts the kernels the device ran.

Columns: ``aten ops`` every ``aten::`` call, nested ones included;
``kernel ops`` the ``aten::`` calls that are not views, allocations or
no-ops and call no such op themselves (matrix products always count):
about one kernel each, what a launch-bound GPU pays for (a multi-tensor
``_foreach_`` op counts once: a few kernels on CUDA); ``kernels`` CUDA
kernels (CUDA only). Under ``--dtype bf16`` the autocast casts are counted
too, as a GPU running AMP launches them.

Examples::

    python -m benchmarks.op_counts
    python -m benchmarks.op_counts --models segvit-b,segvit-shrunk-l \\
        --crop 128 --dtype bf16
"""
import argparse
import collections
import contextlib
from typing import Callable, Dict, List, NamedTuple, Optional
from unittest import mock

import torch

from benchmarks.common import (SPECS, autocast, build_model, device_name,
                               fake_batch, train_step)
from mmseg_segvit.models.layers import (get_batched_weight_casts,
                                        memory_budget,
                                        set_batched_weight_casts, weight_casts)

# Leaf ops that launch no kernel: views, allocations, metadata, no-ops.
NO_KERNEL = frozenset(
    'aten::' + name
    for name in ('as_strided', 'view', '_unsafe_view', '_reshape_alias',
                 'reshape', 'alias', 'detach', 'detach_', 'resolve_conj',
                 'resolve_neg', 't', 'transpose', 'permute', 'expand',
                 'expand_as', 'slice', 'select', 'unsqueeze', 'squeeze',
                 'unflatten', 'flatten', 'narrow', 'split', 'chunk', 'unbind',
                 'split_with_sizes', 'view_as', 'numpy_T', 'contiguous',
                 'empty', 'empty_like', 'empty_strided', 'new_empty',
                 'new_empty_strided', 'lift_fresh', 'dropout', 'is_same_size',
                 'result_type', 'size', 'stride', 'sym_size', 'sym_stride',
                 'to', 'type_as', 'set_', 'requires_grad_',
                 '_has_compatible_shallow_copy_type', 'is_nonzero', 'matmul',
                 'linear', 'lift_fresh_copy'))

# Ops that run their own kernel even where the CPU profile shows them
# calling others (a bias copy before the product, say).
KERNEL_ANYWAY = frozenset('aten::' + name
                          for name in ('addmm', 'mm', 'bmm', 'baddbmm',
                                       'addbmm', 'mv', 'addmv', 'dot'))

# Multi-tensor ops: CUDA runs one over many tensors in a few kernels (up to
# about a hundred tensors per launch); the CPU loops over them, op by op.
FOREACH = 'aten::_foreach_'


def _in_foreach(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(FOREACH):
            return True
        parent = parent.cpu_parent
    return False


def _launches(event, memo: dict) -> bool:
    """Whether an aten event stands for (about) one kernel: not a view or
    allocation, and no kernel op below it (GEMMs count regardless); a multi-
    tensor ``_foreach_`` op counts once, the ops it loops over on the CPU not
    at all."""
    key = id(event)
    if key not in memo:
        name = event.name
        memo[key] = name.startswith('aten::') and name not in NO_KERNEL and (
            not _in_foreach(event)) and (
                name in KERNEL_ANYWAY or name.startswith(FOREACH)
                or not any(_launches(c, memo) for c in event.cpu_children))
    return memo[key]


class OpCount(NamedTuple):
    """Operator counts of one call."""
    aten: int
    leaf: int
    kernels: Optional[int]
    top: List[tuple]  # (name, leaf calls), most frequent first


def count_ops(fn: Callable[[], object],
              device: torch.device,
              top: int = 8) -> OpCount:
    """Profile one call of ``fn`` and count its operators."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
    aten = leaf = 0
    kernels = 0 if device.type == 'cuda' else None
    names: Dict[str, int] = collections.Counter()
    memo: dict = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels += 1
            continue
        if not event.name.startswith('aten::'):
            continue
        aten += 1
        if _launches(event, memo) and (
                event.name in KERNEL_ANYWAY or event.name.startswith(FOREACH)
                or not any(_launches(c, memo) for c in event.cpu_children)):
            leaf += 1
            names[event.name] += 1
    return OpCount(aten, leaf, kernels, names.most_common(top))


@contextlib.contextmanager
def chunking(device: torch.device, device_chunking: bool):
    """On CPU, as on a GPU: the combination in one piece and the weight casts
    batched, unless the device's own behaviour is asked for."""
    if device.type != 'cpu' or device_chunking:
        yield
        return
    patches = contextlib.ExitStack()
    before = get_batched_weight_casts()
    casts = before is not False
    if casts:  # on for CUDA (None) or everywhere: batched here as on CUDA
        set_batched_weight_casts(True)
        # as under CUDA autocast, where torch's MultiheadAttention never
        # takes its fp32 fast path, so its weights are batched as well
        patches.enter_context(
            mock.patch.object(weight_casts, '_mha_in_autocast', lambda: True))
    try:
        with patches, memory_budget(float('inf')):
            yield
    finally:
        if casts:
            set_batched_weight_casts(before)


def inference_and_step(model,
                       crop: int,
                       batch: int,
                       train_batch: int,
                       device: torch.device,
                       dtype: str,
                       device_chunking: bool = False):
    """OpCounts of one inference (``encode_decode`` at ``batch``) and one
    training step (forward, loss, backward at ``train_batch``)."""
    num_classes = model.decode_head.num_classes
    x, metas, _ = fake_batch(batch, crop, num_classes, device)
    with chunking(device, device_chunking):
        model.eval()

        def infer_once():
            # a fresh autocast region per call, as a test loop enters one
            # per batch: its weight casts are counted (autocast caches them
            # only until the region ends)
            with torch.no_grad(), autocast(device, dtype):
                model.encode_decode(x, metas)

        infer_once()  # warm-up
        infer = count_ops(infer_once, device)
        model.train()
        x, _, samples = fake_batch(train_batch, crop, num_classes, device)
        step = train_step(model, x, samples, device, dtype)
        step()  # warm-up
        train = count_ops(step, device)
    return infer, train


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--models', default='segvit-b,segvit-shrunk-l', help='keys of SPECS')
    parser.add_argument(
        '--crop',
        type=int,
        default=None,
        help='crop (default: each model\'s own)')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--dtype', choices=['fp32', 'bf16'], default='fp32')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--device-chunking',
        action='store_true',
        help='keep the CPU\'s cache-sized bands')
    parser.add_argument(
        '--top',
        action='store_true',
        help='also list the most frequent kernel ops')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f'# Operator counts ({device_name(device)}, '
          f'{args.dtype}, batch {args.batch}, torch {torch.__version__})\n')
    print('| model | crop | inference aten ops | inference kernel ops | '
          'inference kernels | train step aten ops | train step kernel ops | '
          'train step kernels |')
    print('|---|---|---|---|---|---|---|---|')
    tops = []
    for key in args.models.split(','):
        spec = SPECS[key]
        crop = args.crop or spec.crop
        model = build_model(spec, crop).to(device)
        infer, train = inference_and_step(model, crop, args.batch, args.batch,
                                          device, args.dtype,
                                          args.device_chunking)
        print(f'| {spec.label} | {crop} | {infer.aten} | {infer.leaf} | '
              f'{infer.kernels if infer.kernels is not None else "-"} | '
              f'{train.aten} | {train.leaf} | '
              f'{train.kernels if train.kernels is not None else "-"} |')
        tops.append((spec.label, infer.top, train.top))
        del model
    if args.top:
        for label, infer_top, train_top in tops:
            print(f'\n{label}: most frequent kernel ops, inference: ' +
                  ', '.join(f'{n} x{c}' for n, c in infer_top))
            print(f'{label}: most frequent kernel ops, train step: ' +
                  ', '.join(f'{n} x{c}' for n, c in train_top))


if __name__ == '__main__':
    main()
