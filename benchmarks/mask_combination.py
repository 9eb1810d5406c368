"""The faithful inference combination at ADE20K size: literal vs banded.

``einsum('bqc,bqhw->bchw', p, sigmoid(resize(m)))`` for 150 queries and
classes, masks on a 32x32 grid resized to 512x512 (one ViT-B crop), timed
as written (resize, in-place sigmoid, einsum) and as
``combine_resized_masks`` computes it with the device's own plan
(``plan_rows``) and for several band sizes, interleaved, medians. Two
reference rows put the figures in context: the class sum
alone as one (150 x 150) @ (150 x 262,144) product on ready sigmoid masks
(what the literal einsum runs), and the first writes to a fresh
(150, 512, 512) output (page faults), which every order pays.

Usage::

    python -m benchmarks.mask_combination [--rounds 7] [--batch 1]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mmseg_segvit.models.layers import combine_resized_masks, plan_rows

BANDS = (1 << 19, 1 << 21, 1 << 23)  # bytes of resized masks per band


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--queries', type=int, default=150)
    parser.add_argument('--grid', type=int, default=32)
    parser.add_argument('--size', type=int, default=512)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    b, q, size = args.batch, args.queries, (args.size, args.size)
    prob = torch.randn(b, q, q + 1).softmax(-1)[..., :-1]
    masks = torch.randn(b, q, args.grid, args.grid)
    ready = torch.rand(b, q, args.size * args.size)
    weights = prob.transpose(1, 2).contiguous()

    def literal():
        resized = F.interpolate(
            masks, size=size, mode='bilinear', align_corners=False)
        return torch.einsum('bqc,bqhw->bchw', prob, resized.sigmoid_())

    cases = {'literal resize, sigmoid, einsum': literal}
    planned = plan_rows(b, q, q, size, masks.device, 4)
    cases[f'planned for this device ({planned} rows per band)'] = (
        lambda: combine_resized_masks(prob, masks, size))
    for band in BANDS:
        rows = max(1, band // (b * q * size[1] * 4))
        cases[f'banded, {band >> 10} KiB per band ({rows} rows)'] = (
            lambda rows=rows: combine_resized_masks(
                prob, masks, size, False, rows=rows))
    cases['reference: class sum alone, as one bmm'] = (
        lambda: torch.bmm(weights, ready))
    cases['reference: first writes to a fresh output'] = (
        lambda: torch.empty(b, q, *size).fill_(0))

    with torch.no_grad():
        error = (combine_resized_masks(prob, masks, size) -
                 literal()).abs().max().item()
        times = {name: [] for name in cases}
        for i in range(args.rounds + 1):  # the first round warms up
            for name, fn in cases.items():
                start = time.perf_counter()
                fn()
                if i:
                    times[name].append(time.perf_counter() - start)
    print(f'{b} x {q} masks {args.grid}x{args.grid} -> {size[0]}x{size[1]}, '
          f'{torch.get_num_threads()} threads, median of {args.rounds}; '
          f'max |banded - literal| = {error:.1e}')
    print('| computation | time (s) |')
    print('|---|---|')
    for name, values in times.items():
        print(f'| {name} | {statistics.median(values):.3f} |')


if __name__ == '__main__':
    main()
