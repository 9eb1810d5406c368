"""Side-by-side speed and memory of SegViT and the MMSeg models it competes
with, measured in one process, interleaved, with warm-up and medians.

For every model (at its own crop size) the script reports: parameters,
GFLOPs (multiply-adds, fvcore's convention, as the papers count), inference
latency at batch 1, throughput at a larger batch, one training step
(forward + loss + backward + AdamW step), peak memory of inference and of
the training step, the decode head's share of the inference time, and the
achieved multiply-add rate as a fraction of a large matrix multiply timed in
the same run, on the same device and dtype.

Timing: every figure of a round is the mean of one block of calls after
the warm-up rounds, timed with the device synchronised before and after the
block: at least ``--min-calls`` calls (20) or at least ``--min-seconds``
(1 s) of calls, whichever is reached first. The table gives the median over
the kept rounds and the spread (min-max) beside it. Peak memory is taken in
a call of its own.

The official SegViT code (github zbwxp/SegVit, unmodified files read from a
git mirror) runs in the same process and the same table (``off-b``,
``off-l``, ``off-shrunk-l``) through the harness in ``SEGVIT_PEERS``
(default ``../shared/gpu/peers`` beside the checkout, else ``.whl/peers``)
with ``SEGVIT_OFFICIAL`` the mirror's git directory; without them those
rows are skipped with a message.

Models are built from their configs with random weights (nothing is
downloaded); SyncBN becomes BN so that single-process training works.
Results go to ``benchmarks/results/<device>_<dtype>[_<tag>].md`` and a PNG
chart next to it.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the memory
in use before the call; on CPU the peak resident set above the resident
set before the call, measured in a child process with a fixed glibc mmap
threshold (``cpu_memory.py``). Times come from this process, which keeps
glibc's default allocator, as a user's does.

Examples::

    python -m benchmarks.bench_models --quick
    python -m benchmarks.bench_models --models segvit-b,segmenter-b,upernet-b
    python -m benchmarks.bench_models --models segvit-b,segvit-b-lean \\
        --metrics train --train-batch 2 --tag loss
    python -m benchmarks.bench_models --device cuda --dtype bf16
    SEGVIT_OFFICIAL=.whl/SegVit.git python -m benchmarks.bench_models \\
        --device cuda --dtype bf16 --models off-b,segvit-b,segvit-b-casts
    python -m benchmarks.bench_models --tiny --models segvit-b  # dry run
"""
import argparse
import datetime
import os
import os.path as osp
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

# SPECS, build_model and fake_batch are also this module's interface to
# harnesses that import it by name (``import bench_models``)
from benchmarks.common import (REPO, SPECS, OfficialSegmentor, Spec, autocast,
                               build_model, device_name, fake_batch,
                               make_optimizer, measure, resolve_config,
                               spec_setting, synchronize, time_block,
                               train_step)
from benchmarks.cpu_memory import (CHILD_FLAG, check_child, run_child,
                                   write_child_result)
from benchmarks.op_counts import inference_and_step
from mmseg_segvit.utils.flops import count_flops

DEFAULT_MODELS = ('segvit-b,segvit-b-fast,segvit-l,segvit-shrunk-l,'
                  'segmenter-b,upernet-b,setr-l')
METRICS = ('flops', 'latency', 'head', 'throughput', 'train', 'memory', 'ops')
# Defaults per device type: throughput batch, training batch, warm-up
# rounds, kept rounds, matrix-multiply size of the reference rate.
DEVICE_DEFAULTS = {
    'cpu': dict(batch=2, train_batch=2, warmup=1, iters=3, matmul_size=2048),
    'cuda': dict(batch=16, train_batch=8, warmup=1, iters=5, matmul_size=8192),
}


def spec_crop(spec: Spec, args) -> int:
    """The crop a row runs at: ``--crop``, else the spec's own; the official
    presets are built for one size (64 with ``--tiny``)."""
    if spec.official:
        return 64 if args.tiny else spec.crop
    return args.crop or (64 if args.tiny and spec.crop > 64 else spec.crop)


def compile_model(model: nn.Module, mode: Optional[str] = None) -> nn.Module:
    """Compile (inductor) every method the benchmark calls, in place.

    mmengine's ``compile=True`` compiles the runner's ``train_step``; here the
    same ``torch.compile`` wraps ``extract_feat``, ``encode_decode``, ``loss``
    and the head's ``predict`` (dynamo inlines the nested ones), so latency,
    throughput and the training step all run compiled.
    """
    for owner, name in ((model, 'extract_feat'), (model, 'encode_decode'),
                        (model, 'loss'), (model.decode_head, 'predict')):
        setattr(owner, name, torch.compile(getattr(owner, name), mode=mode))
    return model


def matmul_rate(device: torch.device, dtype: str, n: int, iters: int) -> float:
    """Multiply-adds per second of an n x n x n matrix multiply."""
    torch_dtype = dict(
        fp32=torch.float32, bf16=torch.bfloat16, fp16=torch.float16)[dtype]
    a = torch.randn(n, n, device=device, dtype=torch_dtype)
    b = torch.randn(n, n, device=device, dtype=torch_dtype)
    times = []
    for i in range(iters + 1):
        seconds, _ = measure(lambda: a @ b, device, memory=False)
        if i:
            times.append(seconds)
    return n**3 / statistics.median(times)


def count_gmacs(model: nn.Module, images: torch.Tensor) -> Tuple[float, float]:
    """GMACs of the whole inference (``encode_decode``: backbone, head, resize)
    and of the backbone (+ neck), fused attention counted."""
    count = count_flops(model, inputs=images)
    trunk = count.by_module.get('backbone', 0)
    trunk += count.by_module.get('neck', 0)
    return count.total / 1e9, trunk / 1e9


@dataclass
class Row:
    key: str
    spec: Spec
    model: nn.Module
    crop: int
    results: Dict[str, List[float]] = field(default_factory=dict)
    fixed: Dict[str, float] = field(default_factory=dict)
    _optimizer: Optional[torch.optim.Optimizer] = None

    def optimizer(self) -> torch.optim.Optimizer:
        """The row's AdamW, made at its first training step (its state is part
        of the training memory, as in a real run)."""
        if self._optimizer is None:
            self._optimizer = make_optimizer(self.model)
        return self._optimizer

    def spread(self, name: str) -> Optional[Tuple[float, float]]:
        values = self.results.get(name)
        return (min(values), max(values)) if values else None

    def add(self, name: str, value: Optional[float]) -> None:
        if value is not None:
            self.results.setdefault(name, []).append(value)

    def median(self, name: str) -> Optional[float]:
        values = self.results.get(name)
        return statistics.median(values) if values else None


def head_call(model: nn.Module, feats, metas: list):
    """The decode head's part of one inference (the official adapter has its
    own)."""
    if isinstance(model, OfficialSegmentor):
        return model.predict_head(feats, metas)
    return model.decode_head.predict(feats, metas, model.test_cfg)


def run_round(row: Row, args, device: torch.device, keep: bool) -> None:
    """One interleaved round of every selected measurement of one model."""
    with spec_setting(row.spec):
        _run_round(row, args, device, keep)


def _run_round(row: Row, args, device: torch.device, keep: bool) -> None:
    model = row.model
    # on CPU memory comes from its own process (cpu_memory)
    memory = 'memory' in args.metrics and device.type == 'cuda'
    num_classes = model.decode_head.num_classes
    block = dict(min_calls=args.min_calls, min_seconds=args.min_seconds)
    if 'latency' in args.metrics:
        x, metas, _ = fake_batch(1, row.crop, num_classes, device)
        model.eval()

        def infer_parts():
            # one autocast region per call, as a test loop enters one per
            # batch; with 'head', backbone and head are also timed apart
            # on the same features (the head's share of the latency)
            with torch.no_grad(), autocast(device, args.dtype):
                return model.extract_feat(x)

        def head_part():
            with torch.no_grad(), autocast(device, args.dtype):
                head_call(model, feats, metas)

        def whole():
            with torch.no_grad(), autocast(device, args.dtype):
                model.encode_decode(x, metas)

        t_whole = time_block(whole, device, **block)
        if 'head' in args.metrics:
            feats = infer_parts()
            t_trunk = time_block(infer_parts, device, **block)
            t_head = time_block(head_part, device, **block)
        if memory:
            _, peak = measure(whole, device, True)
        if keep:
            row.add('latency', t_whole)
            if 'head' in args.metrics:
                row.add('trunk', t_trunk)
                row.add('head', t_head)
            if memory:
                row.add('infer_mem', peak)
    if 'throughput' in args.metrics:
        x, metas, _ = fake_batch(args.batch, row.crop, num_classes, device)
        model.eval()

        def batch_call():
            with torch.no_grad(), autocast(device, args.dtype):
                model.encode_decode(x, metas)

        seconds = time_block(batch_call, device, **block)
        if keep:
            row.add('throughput', args.batch / seconds)
    if 'train' in args.metrics:
        x, _, samples = fake_batch(args.train_batch, row.crop, num_classes,
                                   device)
        model.train()
        step = train_step(model, x, samples, device, args.dtype,
                          row.optimizer())
        seconds = time_block(step, device, **block)
        _, peak = measure(step, device, memory)
        if keep:
            row.add('train', seconds)
            row.add('train_mem', peak)
    if 'ops' in args.metrics and keep and 'infer_ops' not in row.fixed:
        count_row_ops(row, args, device)


def count_row_ops(row: Row, args, device: torch.device) -> None:
    """Kernels (CUDA) or kernel ops (CPU, computed in one piece as on a GPU) of
    one inference at the throughput batch and one training step."""
    try:
        infer, train = inference_and_step(row.model, row.crop, args.batch,
                                          args.train_batch, device, args.dtype)
    except RuntimeError as error:  # e.g. a profiler without CUDA support
        print(f'op counts of {row.key} failed: {error}', flush=True)
        return
    pick = 'kernels' if device.type == 'cuda' else 'leaf'
    row.fixed['infer_ops'] = getattr(infer, pick)
    row.fixed['train_ops'] = getattr(train, pick)


def memory_child(args, path: str) -> None:
    """In the CPU memory process: peak MiB of inference (batch 1) and of a
    training step of every model, after one warm-up call, one model alive at a
    time; JSON to path."""
    check_child()
    out = {}
    for key in args.models:
        spec = SPECS[key]
        if resolve_config(spec) is None:
            continue
        crop = spec_crop(spec, args)
        peaks = out.setdefault(key, {})
        with spec_setting(spec):
            _memory_peaks(
                build_model(spec, crop, args.tiny), crop, args, peaks)
        print(f'memory {key}: {peaks}', flush=True)
    write_child_result(path, out)


def _memory_peaks(model: nn.Module, crop: int, args, peaks: dict) -> None:
    """Peak MiB of one inference and one training step (the second call of
    each) into ``peaks``."""
    device = torch.device('cpu')
    num_classes = model.decode_head.num_classes
    if 'latency' in args.metrics:
        x, metas, _ = fake_batch(1, crop, num_classes, device)
        model.eval()
        with torch.no_grad(), autocast(device, args.dtype):
            for _ in range(2):
                _, peak = measure(lambda: model.encode_decode(x, metas),
                                  device, True)
        peaks['infer_mem'] = peak
    if 'train' in args.metrics:
        x, _, samples = fake_batch(args.train_batch, crop, num_classes, device)
        model.train()
        step = train_step(model, x, samples, device, args.dtype,
                          make_optimizer(model))
        for _ in range(2):
            _, peak = measure(step, device, True)
        peaks['train_mem'] = peak


def profile_head(row: Row, args, device: torch.device, top: int = 8) -> str:
    """Markdown list of the ops that take the decode head's time."""
    from torch.profiler import ProfilerActivity, profile
    model = row.model.eval()
    x, metas, _ = fake_batch(1, row.crop, model.decode_head.num_classes,
                             device)
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with torch.no_grad(), autocast(device, args.dtype):
        feats = model.extract_feat(x)
        with profile(activities=activities) as prof:
            head_call(model, feats, metas)
            synchronize(device)
    sort = 'self_cuda_time_total' if device.type == 'cuda' else \
        'self_cpu_time_total'
    events = sorted(
        prof.key_averages(), key=lambda e: getattr(e, sort), reverse=True)
    total = sum(getattr(e, sort) for e in events)
    lines = [
        f'\n### Decode head ops: {row.spec.label} ({total / 1e3:.0f} ms '
        'in the profiler)\n', '| op | calls | self time (ms) | share |',
        '|---|---|---|---|'
    ]
    for e in events[:top]:
        t = getattr(e, sort)
        lines.append(f'| `{e.key}` | {e.count} | {t / 1e3:.1f} | '
                     f'{100 * t / total:.0f}% |')
    return '\n'.join(lines) + '\n'


# --- reporting ---
def slug(device: torch.device) -> str:
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device).lower()
        name = ''.join(c if c.isalnum() else '-' for c in name)
        return 'cuda-' + '-'.join(p for p in name.split('-') if p)
    return f'cpu-{torch.get_num_threads()}threads'


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _spread(row: Row, name: str, digits: int) -> str:
    """Median and (min-max) of a measurement's kept rounds."""
    median = row.median(name)
    if median is None:
        return '-'
    low, high = row.spread(name)
    if len(row.results[name]) == 1:
        return _fmt(median, digits)
    return (f'{_fmt(median, digits)} ({_fmt(low, digits)}-'
            f'{_fmt(high, digits)})')


def official_twin(key: str) -> Optional[str]:
    """The official code's row for a SegViT row of this package (the same model
    and crop), or None."""
    for prefix, twin in (('segvit-shrunk-l', 'off-shrunk-l'),
                         ('segvit-l', 'off-l'), ('segvit-b', 'off-b')):
        if key.startswith(prefix):
            return twin
    return None


def ratio_lines(rows: List[Row]) -> List[str]:
    """Markdown table of every SegViT row against the official code's row of
    the same model in this run (and the batch-1 latency against MMSeg's
    Segmenter ViT-B): speed-ups > 1 and memory < 100% favour this package."""
    by_key = {row.key: row for row in rows}
    segmenter = by_key.get('segmenter-b')
    lines = []
    for row in rows:
        twin = by_key.get(official_twin(row.key) or '')
        if twin is None:
            continue

        def ratio(name, invert=False):
            ours, theirs = row.median(name), twin.median(name)
            if not ours or not theirs:
                return '-'
            return f'{(theirs / ours) if invert else (ours / theirs):.2f}x'

        memory = '-'
        ours_mem, theirs_mem = row.median('train_mem'), twin.median(
            'train_mem')
        if ours_mem and theirs_mem:
            memory = f'{100 * ours_mem / theirs_mem:.0f}%'
        vs_segmenter = '-'
        latency = row.median('latency')
        reference = segmenter.median('latency') if segmenter else None
        if latency and reference:
            vs_segmenter = f'{latency / reference:.2f}'
        lines.append(f'| {row.spec.label} | {twin.spec.label} | '
                     f'{ratio("throughput")} | {ratio("latency", True)} | '
                     f'{ratio("train", True)} | {memory} | {vs_segmenter} |')
    if not lines:
        return []
    return [
        '', '## Against the official code, same run', '',
        '| model | official row | throughput | latency b1 speed-up | '
        'train step speed-up | train peak memory | latency / '
        'Segmenter\'s |', '|---|---|---|---|---|---|---|'
    ] + lines


def report(rows: List[Row], args, device: torch.device, rate: float,
           path: str) -> str:
    """Write the markdown table; return it."""
    ops = 'kernels' if device.type == 'cuda' else 'kernel ops'
    header = [
        'model', 'crop', 'params (M)', 'GMACs', 'latency b1 (s)',
        f'throughput b{args.batch} (img/s)',
        f'train step b{args.train_batch} (s)', 'infer peak (MiB)',
        'train peak (MiB)', 'head share', 'head GMACs share', 'GMAC/s',
        'of matmul', f'{ops} per inference b{args.batch}',
        f'{ops} per train step b{args.train_batch}'
    ]
    lines = [
        f'# Benchmark: {device_name(device)}, {args.dtype}', '',
        f'- date: {datetime.date.today()}, torch {torch.__version__}',
        f'- command: `python -m benchmarks.bench_models '
        f'{" ".join(sys.argv[1:])}`',
        f'- warm-up {args.warmup}, median of {args.iters} interleaved '
        f'rounds', f'- matrix multiply {args.matmul_size}^3 in {args.dtype}:'
        f' {rate / 1e9:.1f} GMAC/s (same run)',
        '- GMACs: multiply-adds of one image (fvcore convention, "GFLOPs" '
        'in the papers); head = everything after the backbone (and neck), '
        'final resize included',
        '- kernels: CUDA kernels in torch.profiler; kernel ops (CPU): '
        'aten ops that are not views or allocations and call no such op '
        '(benchmarks/op_counts.py), mask combination in one piece as on a '
        'GPU',
        f'- times: each round one block of >= {args.min_calls} calls or >= '
        f'{args.min_seconds:g} s after warm-up, device synchronised around '
        'the block; cells give the median of the rounds and (min-max); the '
        'training step includes an AdamW step; peaks from a call of their '
        'own', '', '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)
    ]
    for row in rows:
        gmacs = row.fixed.get('gmacs')
        trunk = row.fixed.get('trunk_gmacs')
        latency = row.median('latency')
        head = row.median('head')
        parts = (row.median('trunk') or 0) + (head or 0)
        achieved = gmacs * 1e9 / latency if gmacs and latency else None
        cells = [
            row.spec.label,
            str(row.crop),
            _fmt(row.fixed['params'] / 1e6),
            _fmt(gmacs, 1),
            _spread(row, 'latency', 3),
            _spread(row, 'throughput', 2),
            _spread(row, 'train', 3),
            _fmt(row.median('infer_mem'), 0),
            _fmt(row.median('train_mem'), 0),
            '-' if not head or not parts else f'{100 * head / parts:.1f}%',
            '-' if gmacs is None else f'{100 * (gmacs - trunk) / gmacs:.1f}%',
            '-' if achieved is None else f'{achieved / 1e9:.1f}',
            '-' if achieved is None else f'{achieved / rate:.2f}',
            str(row.fixed.get('infer_ops', '-')),
            str(row.fixed.get('train_ops', '-')),
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ratio_lines(rows)
    lines += ['', 'Every kept round (seconds), to judge the noise:', '']
    for row in rows:
        for name in ('latency', 'train'):
            values = row.results.get(name)
            if values:
                lines.append(f'- {row.spec.label}, {name}: ' +
                             ', '.join(f'{v:.3f}' for v in values) +
                             f' (min {min(values):.3f})')
    text = '\n'.join(lines) + '\n'
    with open(path, 'w') as f:
        f.write(text)
    return text


def chart(rows: List[Row], rate: float, path: str, title: str) -> None:
    """Latency (backbone / head) and achieved rate per model."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [
        r for r in rows
        if r.median('latency') is not None and r.median('head') is not None
    ]
    if not rows:
        return
    labels = [f'{r.spec.label}\n@{r.crop}' for r in rows]
    trunk = [r.median('trunk') for r in rows]
    head = [r.median('head') for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.6 * len(rows) + 2))
    pos = range(len(rows))
    axes[0].barh(pos, trunk, label='backbone (+ neck)', color='#4c72b0')
    axes[0].barh(pos, head, left=trunk, label='decode head', color='#dd8452')
    axes[0].set_yticks(list(pos), labels, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_xlabel('inference latency, batch 1 (s)')
    axes[0].legend(fontsize=8)
    frac = [(r.fixed.get('gmacs') or 0) * 1e9 / r.median('latency') / rate
            for r in rows]
    axes[1].barh(pos, frac, color='#55a868')
    axes[1].axvline(1.0, color='k', lw=0.8, ls='--')
    axes[1].set_yticks(list(pos), [''] * len(rows))
    axes[1].invert_yaxis()
    axes[1].set_xlabel('achieved MAC/s / same-run matmul MAC/s')
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ---
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--models',
        default=DEFAULT_MODELS,
        help=f'comma-separated keys of {sorted(SPECS)}')
    parser.add_argument(
        '--metrics',
        default=','.join(METRICS),
        help=f'comma-separated subset of {METRICS}')
    parser.add_argument(
        '--batch',
        type=int,
        default=None,
        help='throughput batch size (CPU 2, CUDA 16)')
    parser.add_argument(
        '--train-batch',
        type=int,
        default=None,
        help='training batch size (CPU 2, CUDA 8)')
    parser.add_argument(
        '--dtype',
        choices=['fp32', 'bf16', 'fp16'],
        default='fp32',
        help='autocast dtype')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--warmup',
        type=int,
        default=None,
        help='warm-up rounds (CPU 1, CUDA 2)')
    parser.add_argument(
        '--iters', type=int, default=None, help='kept rounds (CPU 3, CUDA 5)')
    parser.add_argument(
        '--crop',
        type=int,
        default=None,
        help='override every crop (e.g. for a quick run)')
    parser.add_argument(
        '--matmul-size',
        type=int,
        default=None,
        help='reference matrix multiply (CPU 2048, CUDA '
        '8192)')
    parser.add_argument('--tag', default='', help='suffix of the outputs')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='add a row per model run under torch.compile (inductor), as '
        'mmengine\'s compile=True; its warm-up rounds include compiling')
    parser.add_argument(
        '--compile-mode',
        default=None,
        choices=['default', 'reduce-overhead', 'max-autotune'],
        help='torch.compile mode of the --compile rows (reduce-overhead: '
        'CUDA graphs)')
    parser.add_argument(
        '--min-calls',
        type=int,
        default=20,
        help='calls per timed block (or --min-seconds)')
    parser.add_argument(
        '--min-seconds',
        type=float,
        default=1.0,
        help='seconds per timed block (or --min-calls)')
    parser.add_argument(
        '--tiny',
        action='store_true',
        help='every model at 4 blocks of 64 channels (the official code: '
        'its tiny presets at 64 px): a dry run of the script in seconds, '
        'not a measurement')
    parser.add_argument(
        '--profile-head',
        action='store_true',
        help='add the top ops of each decode head (torch.profiler)')
    parser.add_argument(
        '--out-dir', default=osp.join(REPO, 'benchmarks', 'results'))
    parser.add_argument(
        '--quick',
        action='store_true',
        help='SegViT and Segmenter ViT-B at 128 px, one round (< 1 min)')
    parser.add_argument(CHILD_FLAG, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device_type = torch.device(args.device).type
    for name, value in DEVICE_DEFAULTS.get(device_type,
                                           DEVICE_DEFAULTS['cuda']).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.models = 'segvit-b,segvit-b-fast,segmenter-b'
        args.crop, args.warmup, args.iters = 128, 1, 1
        args.tag = args.tag or 'quick'
    args.models = [m for m in args.models.split(',') if m]
    args.metrics = [m for m in args.metrics.split(',') if m]
    for m in args.models:
        if m not in SPECS:
            parser.error(f'unknown model {m!r}; choose from {sorted(SPECS)}')
    for m in args.metrics:
        if m not in METRICS:
            parser.error(f'unknown metric {m!r}; choose from {METRICS}')
    return args


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.memory_child:
        memory_child(args, args.memory_child)
        return
    # CPU memory first: the child builds the models one at a time, while
    # this process holds none of them
    peaks = {}
    if device.type == 'cpu' and 'memory' in args.metrics:
        peaks = run_child('benchmarks.bench_models', argv)
    rows = []
    for key in args.models:
        spec = SPECS[key]
        if resolve_config(spec) is None:
            print(f'skip {key}: ' +
                  ('the official code needs SEGVIT_OFFICIAL (a git mirror of '
                   'github zbwxp/SegVit) and its harness (SEGVIT_PEERS)'
                   if spec.official else f'no config matches {spec.config}'))
            continue
        crop = spec_crop(spec, args)
        model = build_model(spec, crop, args.tiny).to(device)
        row = Row(key, spec, model, crop)
        row.fixed['params'] = sum(p.numel() for p in model.parameters())
        if 'flops' in args.metrics:
            x, metas, _ = fake_batch(1, crop, model.decode_head.num_classes,
                                     'cpu')
            model.eval()
            gmacs, trunk = count_gmacs(model.cpu(), x)
            model.to(device)
            row.fixed.update(gmacs=gmacs, trunk_gmacs=trunk)
        for name, value in peaks.get(key, {}).items():
            row.add(name, value)
        rows.append(row)
        print(f'built {key}: {row.fixed}', flush=True)
        if args.compile:
            compiled = compile_model(
                build_model(spec, crop, args.tiny).to(device),
                args.compile_mode)
            label = f'{spec.label}, torch.compile' + (
                f' ({args.compile_mode})' if args.compile_mode else '')
            twin = Row(
                f'{key}+compile',
                replace(spec, label=label),
                compiled,
                crop,
                fixed=dict(row.fixed))
            if device.type == 'cpu':  # inductor's C++ kernels are no aten ops
                twin.fixed.update(infer_ops='-', train_ops='-')
            rows.append(twin)

    rate = matmul_rate(device, args.dtype, args.matmul_size, 3)
    rates = [rate]
    for i in range(args.warmup + args.iters):
        keep = i >= args.warmup
        for row in rows:
            start = time.perf_counter()
            run_round(row, args, device, keep)
            print(
                f'round {i} {row.key}: '
                f'{time.perf_counter() - start:.1f} s',
                flush=True)
        rates.append(matmul_rate(device, args.dtype, args.matmul_size, 1))
    rate = statistics.median(rates)

    os.makedirs(args.out_dir, exist_ok=True)
    name = f'{slug(device)}_{args.dtype}' + (f'_{args.tag}'
                                             if args.tag else '')
    md = osp.join(args.out_dir, name + '.md')
    text = report(rows, args, device, rate, md)
    if args.profile_head:
        with open(md, 'a') as f:
            for row in rows:
                f.write(profile_head(row, args, device))
        with open(md) as f:
            text = f.read()
    try:
        chart(rows, rate, osp.join(args.out_dir, name + '.png'),
              f'{device_name(device)}, {args.dtype}')
    except ImportError:
        print('matplotlib missing: no chart (pip install -e ".[bench]")')
    print(text)
    print(f'wrote {md}')


if __name__ == '__main__':
    main()
