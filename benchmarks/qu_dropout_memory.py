"""Memory and time of Shrunk SegViT's query up-sampling (QU) in training, with
and without its attention dropout.

QU's decoders are torch ``nn.TransformerDecoderLayer``s over one query per
position of the 1/16 grid (1600 at a 640 crop). With dropout, torch's CPU
attention has no fused kernel and keeps every attention map for the
backward pass; this script measures what that costs: one forward + backward
of ``QueryUpsample`` at the ViT-L 640 sizes (two levels of 1024 channels on
40x40 and 20x20 grids, D=512, 16 heads, 3 layers per level), the variants
interleaved, medians. Peak memory is ``torch.cuda.max_memory_allocated``
above the memory before the step, or on CPU the peak resident set above
the resident set before it, measured in a child process (see
``cpu_memory.py``; the times come from this process, with glibc's default
allocator).

Usage::

    python -m benchmarks.qu_dropout_memory [--device cuda] [--batch 2]
        [--dropouts 0.1 0.0] [--rounds 2]
"""
import argparse
import statistics

import torch

from benchmarks.common import measure
from benchmarks.cpu_memory import parse_args, run_child, write_child_result
from mmseg_segvit.models.layers import QueryUpsample  # noqa: E402


def step(qu: QueryUpsample, levels, grid, device: torch.device, memory: bool):
    """Seconds and (with memory) peak extra MiB of one forward + backward."""
    seconds, peak = measure(
        lambda: qu(levels, grid).square().mean().backward(), device, memory)
    qu.zero_grad(set_to_none=True)
    return seconds, peak


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument(
        '--dropouts', type=float, nargs='+', default=[0.1, 0.0])
    parser.add_argument('--rounds', type=int, default=2)
    args, argv = parse_args(parser, argv)
    device = torch.device(args.device)
    child = args.memory_child
    torch.manual_seed(0)
    grid = (40, 40)
    levels = [(torch.randn(args.batch, 1600, 1024, device=device), grid),
              (torch.randn(args.batch, 400, 1024, device=device), (20, 20))]
    models = {}
    for p in args.dropouts:
        qu = QueryUpsample(
            1024,
            embed_dims=512,
            num_heads=16,
            num_layers=3,
            dropout=p,
            query_grid=grid).to(device)
        qu.init_weights()
        models[p] = qu.train()
    results = {p: [] for p in models}
    rounds = 1 if child else args.rounds
    for i in range(rounds + 1):  # the first round warms up
        for p, qu in models.items():
            seconds, peak = step(qu, levels, grid, device,
                                 bool(child) or device.type == 'cuda')
            if i:
                results[p].append((seconds, peak))
    if child:
        write_child_result(child,
                           {str(p): v[0][1]
                            for p, v in results.items()})
        return
    if device.type == 'cpu':
        peaks = run_child('benchmarks.qu_dropout_memory', argv)
        results = {
            p: [(s, peaks[str(p)]) for s, _ in v]
            for p, v in results.items()
        }
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
