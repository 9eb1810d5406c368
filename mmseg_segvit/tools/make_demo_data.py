"""Create the demo dataset: ``python -m mmseg_segvit.tools.make_demo_data``."""
import argparse
import time

from mmseg_segvit.datasets.shapes_generator import (SPLITS,
                                                    dataset_is_complete,
                                                    generate_shapes_dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        'root',
        nargs='?',
        default='data/segvit_shapes',
        help='destination folder (default: data/segvit_shapes)')
    parser.add_argument('--seed', type=int, default=0, help='base seed')
    args = parser.parse_args()
    if dataset_is_complete(args.root):
        print(f'{args.root} already holds a complete demo dataset: kept as '
              'it is (its seed is not checked; remove the folder to '
              f'generate it again with --seed {args.seed})')
        return
    start = time.time()
    generate_shapes_dataset(args.root, seed=args.seed)
    sizes = ', '.join(f'{n} {s}' for s, n in SPLITS.items())
    print(f'demo dataset ready in {args.root} ({sizes} images, '
          f'{time.time() - start:.1f} s)')


if __name__ == '__main__':
    main()
