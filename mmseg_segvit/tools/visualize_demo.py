"""Save a picture of validation images with ground truth and prediction.

``python -m mmseg_segvit.tools.visualize_demo CONFIG CHECKPOINT OUT.png``

Each row shows one validation image, its ground truth and the model's
prediction (colours from the dataset's palette; ignored pixels black).
"""
import argparse
import os
import os.path as osp
from typing import List

import cv2
import numpy as np


def colorize(label: np.ndarray, palette: List[List[int]]) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) RGB; out-of-palette values black."""
    table = np.zeros((256, 3), np.uint8)
    table[:len(palette)] = np.asarray(palette, np.uint8)
    return table[label.astype(np.uint8)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='PNG file to write')
    parser.add_argument('--num', type=int, default=4, help='images (rows)')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()

    import mmseg_segvit  # noqa: F401  (compat first)
    from mmengine.dataset import Compose
    from mmseg.apis import inference_model, init_model
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules()

    model = init_model(args.config, args.checkpoint, device=args.device)
    cfg = model.cfg
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    palette = dataset.metainfo['palette']
    load = Compose([dict(type='LoadImageFromFile'),
                    dict(type='LoadAnnotations')])
    step = max(len(dataset) // args.num, 1)
    rows = []
    for index in range(0, step * args.num, step)[:len(dataset)]:
        info = dataset.get_data_info(index)
        sample = load(dict(img_path=info['img_path'],
                           seg_map_path=info['seg_map_path'],
                           reduce_zero_label=False, seg_fields=[]))
        pred = inference_model(model, sample['img'])
        pred = pred.pred_sem_seg.data[0].cpu().numpy()
        image = sample['img'][..., ::-1]  # BGR -> RGB
        rows.append(np.concatenate([
            image,
            colorize(sample['gt_seg_map'], palette),
            colorize(pred, palette)
        ], axis=1))
    grid = np.concatenate(rows, axis=0)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, grid[..., ::-1])
    print(f'wrote {args.out}: {len(rows)} rows of image | ground truth | '
          'prediction')


if __name__ == '__main__':
    main()
