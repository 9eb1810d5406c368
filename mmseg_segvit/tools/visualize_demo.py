"""Save a picture of validation images with ground truth and prediction.

``python -m mmseg_segvit.tools.visualize_demo CONFIG CHECKPOINT OUT.png``

Each row shows one test image as the config's test pipeline loads it, its
ground truth and the model's prediction, under the column titles image /
ground truth / prediction, with a legend of the classes in the palette's
colours (ignored pixels black); see
:func:`mmseg_segvit.visualization.demo_panel_figure`.
"""
import argparse
import os
import os.path as osp
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='PNG file to write')
    parser.add_argument('--num', type=int, default=4, help='images (rows)')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)

    import mmseg_segvit  # noqa: F401  (compat first)
    # isort: split
    import cv2
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    from mmseg_segvit.apis import init_model
    from mmseg_segvit.visualization import (demo_panel_figure, demo_rows,
                                            figure_to_rgb)
    register_all_modules()

    model = init_model(args.config, args.checkpoint, device=args.device)
    dataset = DATASETS.build(model.cfg.test_dataloader.dataset)
    try:
        rows = demo_rows(model, dataset, args.num)
    except ValueError as err:
        raise SystemExit(f'error: {err} (--num {args.num})')
    picture = figure_to_rgb(
        demo_panel_figure(rows, dataset.metainfo['classes'],
                          dataset.metainfo['palette']))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, picture[..., ::-1])
    print(f'wrote {args.out}: {len(rows)} rows of image | ground truth | '
          'prediction, with a class legend')


if __name__ == '__main__':
    main()
