"""Pictures of a trained segmentor: demo rows and per-image ATM masks.

These functions run the model (through the config's test pipeline, as
``mmseg.apis.inference_model`` reads images) and hand the results to the
drawing functions of :mod:`.panels`.
"""
import os
import os.path as osp
from typing import List, Tuple

import numpy as np
import torch

from .atm_outputs import atm_outputs, rank_classes
from .panels import figure_to_rgb, mask_grid_figure, prediction_figure

__all__ = ['demo_rows', 'save_atm_pictures']


def demo_rows(model: torch.nn.Module, dataset,
              num: int) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Image, ground truth and prediction of ``num`` test images.

    Args:
        model (nn.Module): From ``mmseg.apis.init_model``.
        dataset (BaseSegDataset): The config's test dataset; its own
            pipeline reads image and label. Images are taken evenly spaced.
        num (int): How many images.

    Returns:
        list[tuple]: ``(image, gt, pred)`` per image: the image as the
        loading step decoded it, RGB uint8 (H, W, 3), and the (H, W) ground
        truth and prediction.

    Raises:
        ValueError: If the dataset is empty or ``num < 1``.
    """
    import cv2

    from mmseg_segvit.utils import displayable, load_for_test
    if len(dataset) == 0 or num < 1:
        raise ValueError(f'nothing to draw: the test dataset has '
                         f'{len(dataset)} images and num is {num}')
    cfg = model.cfg
    step = max(len(dataset) // num, 1)
    rows = []
    for index in range(0, step * num, step)[:len(dataset)]:
        data, loaded = load_for_test(
            cfg,
            dataset.get_data_info(index),
            pipeline=cfg.test_dataloader.dataset.pipeline)
        with torch.no_grad():
            result = model.test_step(data)[0]
        pred = result.pred_sem_seg.data[0].cpu().numpy()
        gt = data['data_samples'][0].gt_sem_seg.data[0].cpu().numpy()
        if gt.shape != pred.shape:  # a pipeline that resizes the label
            gt = cv2.resize(
                gt.astype(np.uint8),
                pred.shape[::-1],
                interpolation=cv2.INTER_NEAREST)
        rows.append((displayable(loaded), gt, pred))
    return rows


def save_atm_pictures(model: torch.nn.Module,
                      image_path: str,
                      out_dir: str,
                      topk: int = 5) -> Tuple[str, str]:
    """Write ``{name}_pred.png`` and ``{name}_atm_masks.png`` for an image.

    ``{name}_pred.png`` is :func:`~.panels.prediction_figure`: the image
    and, beside it, the prediction in the palette's colours with a legend
    of the predicted classes; ``{name}_atm_masks.png`` is
    :func:`~.panels.mask_grid_figure` of the top-k classes
    (:func:`~.atm_outputs.rank_classes`), whose rows name the classes
    beside a swatch of their colour.

    Args:
        model (nn.Module): From ``mmseg.apis.init_model``, with
            ``dataset_meta`` (classes and palette).
        image_path (str): The image.
        out_dir (str): Where to write.
        topk (int): Rows of the mask grid. Default: 5.

    Returns:
        tuple[str, str]: Paths of the prediction and the mask grid.
    """
    import mmcv

    from mmseg_segvit.utils import displayable, load_for_test

    os.makedirs(out_dir, exist_ok=True)
    name = osp.splitext(osp.basename(image_path))[0]
    # the config's test pipeline reads the file, as inference_model does
    data, loaded = load_for_test(model.cfg, image_path)
    shown = displayable(loaded)  # RGB, what the model saw
    with torch.no_grad():
        result = model.test_step(data)[0]
    pred = result.pred_sem_seg.data[0].cpu().numpy()
    meta = model.dataset_meta
    pred_file = osp.join(out_dir, f'{name}_pred.png')
    picture = figure_to_rgb(
        prediction_figure(shown, pred, meta['classes'], meta['palette']))
    mmcv.imwrite(picture[..., ::-1], pred_file)
    outputs = atm_outputs(model, data)
    classes = rank_classes(pred, outputs.cls_prob[-1], topk)
    grid = figure_to_rgb(
        mask_grid_figure(
            shown,
            outputs,
            classes,
            meta['classes'],
            meta['palette'],
            pred,
            mask_mode=getattr(model.decode_head, 'mask_mode', 'cumulative')))
    grid_file = osp.join(out_dir, f'{name}_atm_masks.png')
    mmcv.imwrite(grid[..., ::-1], grid_file)
    return pred_file, grid_file
