"""Memory and time of Shrunk SegViT's query up-sampling (QU) in training,
with and without its attention dropout.

QU's decoders are torch ``nn.TransformerDecoderLayer``s over one query per
position of the 1/16 grid (1600 at a 640 crop). With dropout, torch's CPU
attention has no fused kernel and keeps every attention map for the
backward pass; this script measures what that costs: one forward + backward
of ``QueryUpsample`` at the ViT-L 640 sizes (two levels of 1024 channels on
40x40 and 20x20 grids, D=512, 16 heads, 3 layers per level), the variants
interleaved, medians. Peak memory is the process's peak resident set above
the resident set before the step (``VmHWM``, reset through
``/proc/self/clear_refs``; Linux only) or ``torch.cuda.max_memory_allocated``.

Usage::

    python benchmarks/qu_dropout_memory.py [--device cuda] [--batch 2]
        [--dropouts 0.1 0.0] [--rounds 2]
"""
import argparse
import os
import statistics
import sys
import time

if (sys.platform.startswith('linux')
        and 'MALLOC_MMAP_THRESHOLD_' not in os.environ):
    # freed tensors go back to the system, so the resident set follows
    # the live tensors
    os.environ['MALLOC_MMAP_THRESHOLD_'] = str(128 * 1024)
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mmseg_segvit.models.layers import QueryUpsample  # noqa: E402


def _rss_mib(field: str) -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


def step(qu: QueryUpsample, levels, grid, device: torch.device):
    """Seconds and peak extra MiB of one forward + backward."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _rss_mib('VmRSS')
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    start = time.perf_counter()
    qu(levels, grid).square().mean().backward()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak = _rss_mib('VmHWM') - base
    seconds = time.perf_counter() - start
    qu.zero_grad(set_to_none=True)
    return seconds, peak


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument(
        '--dropouts', type=float, nargs='+', default=[0.1, 0.0])
    parser.add_argument('--rounds', type=int, default=2)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    grid = (40, 40)
    levels = [(torch.randn(args.batch, 1600, 1024, device=device), grid),
              (torch.randn(args.batch, 400, 1024, device=device), (20, 20))]
    models = {}
    for p in args.dropouts:
        qu = QueryUpsample(
            1024, embed_dims=512, num_heads=16, num_layers=3, dropout=p,
            query_grid=grid).to(device)
        qu.init_weights()
        models[p] = qu.train()
    results = {p: [] for p in models}
    for i in range(args.rounds + 1):  # the first round warms up
        for p, qu in models.items():
            seconds, peak = step(qu, levels, grid, device)
            if i:
                results[p].append((seconds, peak))
    print(f'QU at ViT-L 640 sizes, batch {args.batch}, {device}, '
          f'{torch.get_num_threads()} threads, median of {args.rounds}')
    print('| QU dropout | forward + backward (s) | peak extra memory (MiB) |')
    print('|---|---|---|')
    for p, values in results.items():
        seconds = statistics.median(v[0] for v in values)
        peak = statistics.median(v[1] for v in values)
        print(f'| {p} | {seconds:.2f} | {peak:.0f} |')


if __name__ == '__main__':
    main()
