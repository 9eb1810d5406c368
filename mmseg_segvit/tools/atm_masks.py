"""Save the prediction and the ATM masks of the top-k classes of an image.

``python -m mmseg_segvit.tools.atm_masks CONFIG CHECKPOINT IMAGE OUT_DIR
--topk K``

For each image (IMAGE may be a file or a folder of images) two PNG files
are written to OUT_DIR (see
:func:`mmseg_segvit.visualization.save_atm_pictures`):

- ``{name}_pred.png``: the image and, beside it, the predicted
  segmentation (the model's own test mode: whole or slide) in the dataset's
  palette, with a legend of the predicted classes and their share of the
  pixels.
- ``{name}_atm_masks.png``: one row per top-k class (the classes covering
  most predicted pixels first, then the most probable ones), named beside a
  swatch of its colour, and one column per output of ``ATMHead.forward``
  showing ``sigmoid(mask)`` over the image with the query's class
  probability, and a last column with the final class score.

Images are read by the config's test pipeline, as ``inference_model``
reads them.
"""
import argparse
import os
import os.path as osp
from typing import List, Optional, Sequence

__all__ = ['list_images', 'main']

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


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
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)

    import mmseg_segvit  # noqa: F401  (compat first)
    # isort: split
    from mmengine.logging import MMLogger
    from mmengine.utils import track_iter_progress
    from mmseg.utils import register_all_modules

    from mmseg_segvit.apis import init_model
    from mmseg_segvit.visualization import save_atm_pictures
    register_all_modules()

    logger = MMLogger.get_instance('atm_masks')
    images = list_images(args.image)
    # any checkpoint layout; class names from the config's dataset when
    # the file has none
    model = init_model(args.config, args.checkpoint, device=args.device)
    if args.device == 'cpu':
        from mmengine.model import revert_sync_batchnorm
        model = revert_sync_batchnorm(model)
    logger.info(f'{len(images)} image(s), top {args.topk} classes, '
                f'writing to {args.out_dir}')
    written = []
    for path in (track_iter_progress(images) if len(images) > 1 else images):
        written.extend(save_atm_pictures(model, path, args.out_dir, args.topk))
    logger.info('wrote ' + ', '.join(written[:4]) +
                (f' and {len(written) - 4} more' if len(written) > 4 else ''))


if __name__ == '__main__':
    main()
