"""Save a picture of validation images with ground truth and prediction.

``python -m mmseg_segvit.tools.visualize_demo CONFIG CHECKPOINT OUT.png``

Each row shows one test image as the config's test pipeline loads it, its
ground truth and the model's prediction (colours from the dataset's
palette; ignored pixels black).
"""
import argparse
import os
import os.path as osp
from typing import List, Optional, Sequence

import cv2
import numpy as np


def colorize(label: np.ndarray, palette: List[List[int]]) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) RGB; out-of-palette values black."""
    table = np.zeros((256, 3), np.uint8)
    table[:len(palette)] = np.asarray(palette, np.uint8)
    return table[label.astype(np.uint8)]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='PNG file to write')
    parser.add_argument('--num', type=int, default=4, help='images (rows)')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)

    import mmseg_segvit  # noqa: F401  (compat first)
    import torch
    from mmseg.apis import init_model
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    from mmseg_segvit.utils import displayable, load_for_test
    register_all_modules()

    model = init_model(args.config, args.checkpoint, device=args.device)
    cfg = model.cfg
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    if len(dataset) == 0 or args.num < 1:
        raise SystemExit(f'error: nothing to draw: the test dataset has '
                         f'{len(dataset)} images and --num is {args.num}')
    palette = dataset.metainfo['palette']
    step = max(len(dataset) // args.num, 1)
    rows = []
    for index in range(0, step * args.num, step)[:len(dataset)]:
        # the test dataset's own pipeline reads image and label
        data, loaded = load_for_test(
            cfg, dataset.get_data_info(index),
            pipeline=cfg.test_dataloader.dataset.pipeline)
        with torch.no_grad():
            result = model.test_step(data)[0]
        pred = result.pred_sem_seg.data[0].cpu().numpy()
        gt = data['data_samples'][0].gt_sem_seg.data[0].cpu().numpy()
        if gt.shape != pred.shape:  # a pipeline that resizes the label
            gt = cv2.resize(gt.astype(np.uint8), pred.shape[::-1],
                            interpolation=cv2.INTER_NEAREST)
        rows.append(np.concatenate([
            displayable(loaded),
            colorize(gt, palette),
            colorize(pred, palette)
        ], axis=1))
    grid = np.concatenate(rows, axis=0)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, grid[..., ::-1])
    print(f'wrote {args.out}: {len(rows)} rows of image | ground truth | '
          'prediction')


if __name__ == '__main__':
    main()
