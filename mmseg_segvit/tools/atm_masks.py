"""Save the prediction and the ATM masks of the top-k classes of an image.

``python -m mmseg_segvit.tools.atm_masks CONFIG CHECKPOINT IMAGE OUT_DIR
--topk K``

SegViT's masks are readable: each class query's mask is the similarity
between that query and every token of a backbone stage. For each image
(IMAGE may be a file or a folder of images) two PNG files are written to
OUT_DIR:

- ``{name}_pred.png``: the predicted segmentation over the image, drawn by
  MMSeg's ``SegLocalVisualizer`` with the class names and the palette
  (the model's own test mode: whole or slide inference).
- ``{name}_atm_masks.png``: a grid with one row per top-k class (the classes
  covering most predicted pixels first, then the most probable ones) and one
  column per output of ``ATMHead.forward`` (per stage, or per decoder layer
  for the Shrunk head), showing ``sigmoid(mask)`` over the image with the
  query's class probability, and a last column with the class score of the
  final output, ``sum over queries q of p_q(class) * sigmoid(mask_q)``
  (query ``class`` dominates it), which the prediction takes the argmax of.

The image is read by the config's test pipeline (as ``inference_model``
reads it: the config's loader, colour type and resizing), and the pictures
show it as that loader decoded it. The masks come from one pass of the
head over the whole (test-pipeline resized) image, so that every row shows
the full picture also for models that predict with sliding windows.
"""
import argparse
import os
import os.path as osp
import warnings
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'AtmOutputs', 'atm_outputs', 'rank_classes', 'draw_mask_grid',
    'list_images', 'save_atm_pictures', 'main'
]

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                  '.webp')


class AtmOutputs(NamedTuple):
    """What ``ATMHead.forward`` returns for one image, ready to draw.

    Attributes:
        cls_prob (Tensor): Class probabilities of every output, softmax over
            K + 1, shape (L, K, K + 1).
        masks (Tensor): ``sigmoid`` of the mask logits of every output,
            resized to the original image, shape (L, K, H, W).
        scores (Tensor): Per-class scores of the last output
            (``ATMHead.semantic_inference``), shape (K, H, W).
    """
    cls_prob: Tensor
    masks: Tensor
    scores: Tensor


@torch.no_grad()
def atm_outputs(model: torch.nn.Module,
                image: Union[str, np.ndarray, dict]) -> AtmOutputs:
    """Run the backbone and ATMHead on one image and keep every output.

    Args:
        model (nn.Module): A segmentor whose ``decode_head`` is an
            ``ATMHead`` (as built by ``mmseg.apis.init_model``).
        image (str | np.ndarray | dict): An image file, read by the
            config's test pipeline (as ``inference_model`` reads it); a
            BGR array (given to ``LoadImageFromNDArray``, as
            ``inference_model`` does); or the ``data`` that
            :func:`mmseg_segvit.utils.load_for_test` returned.

    Returns:
        AtmOutputs: Class probabilities, masks and scores of the image, at
        the size of the image as the pipeline loaded it.
    """
    from mmseg_segvit.utils import load_for_test

    head = model.decode_head
    if not hasattr(head, 'semantic_inference'):
        raise TypeError(f'the model\'s decode head is a '
                        f'{type(head).__name__}, not an ATMHead: it has no '
                        'attention-to-mask outputs to draw')
    if isinstance(image, dict) and 'inputs' in image:
        data = image
    else:
        data, _ = load_for_test(model.cfg, image)
    size = tuple(data['data_samples'][0].ori_shape[:2])
    data = model.data_preprocessor(data, False)
    cls_logits, mask_logits = head(model.extract_feat(data['inputs']))
    masks = F.interpolate(
        mask_logits[:, 0].float(),
        size=size,
        mode='bilinear',
        align_corners=False)
    cls_logits = cls_logits[:, 0].float()
    scores = head.semantic_inference(cls_logits[-1:], masks[-1:])[0]
    return AtmOutputs(cls_logits.softmax(-1), masks.sigmoid(), scores)


def rank_classes(pred: np.ndarray, cls_prob: Tensor, topk: int) -> List[int]:
    """Pick the classes to draw.

    Args:
        pred (np.ndarray): Predicted labels, shape (H, W).
        cls_prob (Tensor): Class probabilities of the last output, shape
            (K, K + 1); query ``c`` predicts class ``c``.
        topk (int): How many classes.

    Returns:
        list[int]: Classes by predicted area (largest first), then classes
        absent from the prediction by their query's probability.
    """
    num_classes = cls_prob.shape[0]
    if topk < 1:
        raise ValueError(f'topk must be at least 1, got {topk}')
    area = np.bincount(
        pred[pred < num_classes].ravel().astype(np.int64),
        minlength=num_classes)
    prob = cls_prob.diagonal().cpu().numpy()
    # area first, then probability
    order = np.lexsort((-prob, -area))
    return [int(c) for c in order[:min(topk, num_classes)]]


def _column_titles(num_outputs: int, mask_mode: str) -> List[str]:
    if mask_mode == 'per_layer':
        return [f'layer {i + 1}' for i in range(num_outputs)]
    return ['stage 1'] + [
        f'stages 1-{i + 1}' for i in range(1, num_outputs)
    ]


def draw_mask_grid(image_rgb: np.ndarray,
                   outputs: AtmOutputs,
                   classes: Sequence[int],
                   names: Sequence[str],
                   palette: Sequence[Sequence[int]],
                   pred: np.ndarray,
                   mask_mode: str = 'cumulative',
                   alpha: float = 0.6) -> np.ndarray:
    """Draw the ATM masks of some classes as a labelled grid.

    Args:
        image_rgb (np.ndarray): The image, RGB, shape (H, W, 3).
        outputs (AtmOutputs): From :func:`atm_outputs`.
        classes (Sequence[int]): One row per class.
        names (Sequence[str]): Class names of the dataset.
        palette (Sequence[Sequence[int]]): RGB colour of each class.
        pred (np.ndarray): Predicted labels, shape (H, W), for the area.
        mask_mode (str): The head's ``mask_mode``, for the column titles.
        alpha (float): Opacity of the mask heat map. Default: 0.6.

    Returns:
        np.ndarray: The picture, RGB uint8, shape (H', W', 3).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    num_outputs = outputs.masks.shape[0]
    titles = _column_titles(num_outputs, mask_mode) + ['class score']
    rows, cols = len(classes), num_outputs + 1
    height, width = image_rgb.shape[:2]
    cell = 2.2
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(cell * cols * max(width / height, 0.5) + 1.2, cell * rows),
        squeeze=False)
    cmap = plt.get_cmap('inferno')
    image = image_rgb.astype(np.float32) / 255
    total = pred.size
    for r, c in enumerate(classes):
        maps = [outputs.masks[i, c] for i in range(num_outputs)]
        maps.append(outputs.scores[c])
        for j, heat in enumerate(maps):
            heat = heat.cpu().numpy()
            picture = (1 - alpha) * image + alpha * cmap(heat)[..., :3]
            ax = axes[r, j]
            ax.imshow(np.clip(picture, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if j < num_outputs:
                prob = float(outputs.cls_prob[j, c, c])
                ax.set_xlabel(f'p = {prob:.2f}', fontsize=8)
            else:
                ax.set_xlabel(f'max {heat.max():.2f}', fontsize=8)
            if r == 0:
                ax.set_title(titles[j], fontsize=9)
        colour = np.asarray(palette[c], np.float32) / 255
        area = 100.0 * float((pred == c).sum()) / total
        axes[r, 0].set_ylabel(
            f'{names[c]}\n{area:.1f}% of pixels', fontsize=9)
        axes[r, 0].add_patch(
            Rectangle((0, 0),
                      0.06 * width,
                      0.06 * height,
                      color=colour,
                      transform=axes[r, 0].transData,
                      clip_on=False))
    fig.suptitle('ATM masks: sigmoid(query-token similarity) per output',
                 fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()
    picture = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return picture


def list_images(path: str) -> List[str]:
    """An image file, or the images in a folder (sorted)."""
    if osp.isdir(path):
        files = sorted(
            osp.join(path, f) for f in os.listdir(path)
            if f.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise FileNotFoundError(f'no image files in {path}')
        return files
    if not osp.isfile(path):
        raise FileNotFoundError(f'no image file or folder at {path}')
    return [path]


def save_atm_pictures(model: torch.nn.Module,
                      image_path: str,
                      out_dir: str,
                      topk: int = 5,
                      opacity: float = 0.5) -> Tuple[str, str]:
    """Write ``{name}_pred.png`` and ``{name}_atm_masks.png`` for an image.

    The image is read by the config's test pipeline (its loader, colour
    type and resizing, as ``inference_model`` reads it); both pictures show
    it as the loader decoded it (a grayscale model's image in gray).

    Args:
        model (nn.Module): From ``mmseg.apis.init_model``, with
            ``dataset_meta`` (classes and palette).
        image_path (str): The image.
        out_dir (str): Where to write.
        topk (int): Rows of the mask grid. Default: 5.
        opacity (float): Opacity of the segmentation overlay. Default: 0.5.

    Returns:
        tuple[str, str]: Paths of the prediction and the mask grid.
    """
    import mmcv
    from mmseg.apis import show_result_pyplot

    from mmseg_segvit.utils import displayable, load_for_test

    os.makedirs(out_dir, exist_ok=True)
    name = osp.splitext(osp.basename(image_path))[0]
    # the config's test pipeline reads the file, as inference_model does
    data, loaded = load_for_test(model.cfg, image_path)
    shown = displayable(loaded)  # RGB, what the model saw
    with torch.no_grad():
        result = model.test_step(data)[0]
    pred_file = osp.join(out_dir, f'{name}_pred.png')
    show_result_pyplot(
        model,
        shown,
        result,
        opacity=opacity,
        draw_gt=False,
        show=False,
        with_labels=True,
        out_file=pred_file)
    pred = result.pred_sem_seg.data[0].cpu().numpy()
    outputs = atm_outputs(model, data)
    classes = rank_classes(pred, outputs.cls_prob[-1], topk)
    meta = model.dataset_meta
    grid = draw_mask_grid(
        shown,
        outputs,
        classes,
        meta['classes'],
        meta['palette'],
        pred,
        mask_mode=getattr(model.decode_head, 'mask_mode', 'cumulative'))
    grid_file = osp.join(out_dir, f'{name}_atm_masks.png')
    mmcv.imwrite(grid[..., ::-1], grid_file)
    return pred_file, grid_file


def _dataset_meta(cfg) -> Optional[dict]:
    """Classes and palette of the config's test dataset."""
    from mmseg_segvit.checkpoints import config_dataset_meta
    meta = config_dataset_meta(cfg)
    if meta is None or meta['palette'] is None:
        return None
    return meta


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description='Save the predicted segmentation and the ATM masks of '
        'the top-k classes of an image (or of every image in a folder).')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('image', help='image file or folder of images')
    parser.add_argument('out_dir')
    parser.add_argument(
        '--topk', type=int, default=5, help='classes (rows) to draw')
    parser.add_argument('--opacity', type=float, default=0.5)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)

    import mmseg_segvit  # noqa: F401  (compat first)
    from mmengine.logging import MMLogger
    from mmengine.utils import track_iter_progress
    from mmseg.apis import init_model
    from mmseg.utils import register_all_modules
    register_all_modules()

    logger = MMLogger.get_instance('atm_masks')
    images = list_images(args.image)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = init_model(args.config, args.checkpoint, device=args.device)
    guessed = any('dataset_meta' in str(w.message) for w in caught)
    if args.device == 'cpu':
        from mmengine.model import revert_sync_batchnorm
        model = revert_sync_batchnorm(model)
    meta = _dataset_meta(model.cfg)
    if guessed and meta is not None:
        # The checkpoint has no class names: MMSeg guessed a dataset from
        # the class count; the config's dataset knows better.
        model.dataset_meta = meta
    logger.info(f'{len(images)} image(s), top {args.topk} classes, '
                f'writing to {args.out_dir}')
    written = []
    for path in (track_iter_progress(images)
                 if len(images) > 1 else images):
        written.extend(
            save_atm_pictures(model, path, args.out_dir, args.topk,
                              args.opacity))
    logger.info('wrote ' + ', '.join(written[:4]) +
                (f' and {len(written) - 4} more' if len(written) > 4 else ''))


if __name__ == '__main__':
    main()
