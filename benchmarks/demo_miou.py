"""The mIoU of a test log beside the figure the metafile records for the same
config (measured on a CPU), and whether they agree within a tolerance.

``benchmarks/gpu_checks.sh`` calls it after training and testing the demo
config on a GPU through ``--launcher pytorch``: a GPU run of the same recipe
should land within 1 mIoU point of the CPU's (other kernels, other rounding;
the same seed and data).

Example::

    python -m benchmarks.demo_miou \\
        configs/segvit/segvit_vit-t8_1xb8-500iter_shapes-128x128.py \\
        benchmarks/results/ddp-test.log
"""
import argparse
import os.path as osp
import re
import sys
from typing import Optional

import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
METAFILE = osp.join(REPO, 'configs', 'segvit', 'metafile.yaml')


def recorded_miou(config: str, metafile: str = METAFILE) -> float:
    """The mIoU the metafile records for ``config`` (matched by name).

    Raises:
        KeyError: The metafile has no model of that name, or no mIoU.
    """
    name = osp.splitext(osp.basename(config))[0]
    with open(metafile) as f:
        models = yaml.safe_load(f)['Models']
    for model in models:
        if model['Name'] == name:
            results = model.get('Results') or []
            if isinstance(results, dict):  # one result, as mim writes it
                results = [results]
            for result in results:
                if 'mIoU' in result.get('Metrics', {}):
                    return float(result['Metrics']['mIoU'])
    raise KeyError(f'{metafile} records no mIoU for {name}')


def logged_miou(text: str) -> Optional[float]:
    """The last mIoU MMSeg's test loop logged (``...

    mIoU: 88.8100 ...``),
    or None.
    """
    found = re.findall(r'mIoU: (\d+(?:\.\d+)?)', text)
    return float(found[-1]) if found else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('log', help='the log of mmseg\'s tools/test.py')
    parser.add_argument(
        '--tolerance',
        type=float,
        default=1.0,
        help='largest accepted difference in mIoU points')
    parser.add_argument(
        '--dry-run',
        action='store_true',
        help='report only (a shortened training cannot match)')
    args = parser.parse_args(argv)
    reference = recorded_miou(args.config)
    with open(args.log) as f:
        measured = logged_miou(f.read())
    if measured is None:
        print(f'demo mIoU: none in {args.log} (the test did not finish)')
        return 0 if args.dry_run else 1
    difference = measured - reference
    ok = abs(difference) <= args.tolerance
    verdict = 'dry run' if args.dry_run else ('ok' if ok else 'FAILED')
    print(f'demo mIoU: {measured:.2f} here, {reference:.2f} in the '
          f'metafile (CPU); difference {difference:+.2f} '
          f'(tolerance {args.tolerance:g}): {verdict}')
    return 0 if ok or args.dry_run else 1


if __name__ == '__main__':
    sys.exit(main())
