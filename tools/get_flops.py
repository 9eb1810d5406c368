"""Count a SegViT config's FLOPs on one image (fvcore convention).

Usage::

    python tools/get_flops.py CONFIG [--shape H [W]] [--mode predict|tensor]

Builds the config's model (no pretrained weights), counts one random image
of the given shape (default: the config's crop) with
:func:`mmseg_segvit.utils.count_flops` and prints a per-module table
(backbone / QD / QU / decode head), the parameter count and, last, a line
``GFLOPs: <number>`` (1 GFLOP = 1e9 multiply-adds).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmseg_segvit.utils import count_flops, flops_summary
from mmseg_segvit.utils.cli import (add_cfg_options_argument,
                                    add_shape_argument, model_and_shape)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Count the FLOPs of a segmentor on one image')
    parser.add_argument('config', help='config file')
    add_shape_argument(parser)
    parser.add_argument(
        '--mode',
        choices=['predict', 'tensor'],
        default='predict',
        help="'predict': inference of one crop incl. the mask resize and the "
        "class combination (default); 'tensor': backbone + head forward, "
        'as mmseg get_flops counts')
    add_cfg_options_argument(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    model, shape = model_and_shape(args)
    count = count_flops(model, shape, mode=args.mode)
    params = sum(p.numel() for p in model.parameters())

    rows = flops_summary(model, count)
    width = max(len(name) for name, _ in rows)
    print(f'{osp.basename(args.config)}  input 1x3x{shape[0]}x{shape[1]}  '
          f'mode {args.mode}')
    print(f'{"module":<{width}}  {"GFLOPs":>9}  {"share":>6}')
    for name, flops in rows:
        share = 100.0 * flops / count.total if count.total else 0.0
        print(f'{name:<{width}}  {flops / 1e9:9.2f}  {share:5.1f}%')
    print(f'params: {params / 1e6:.2f}M')
    print(f'GFLOPs: {count.total / 1e9:.1f}')


if __name__ == '__main__':
    main()
