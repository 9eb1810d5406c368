"""A ``Resize`` that never makes a side 0 pixels.

mmcv's ``Resize`` with ``keep_ratio=True`` scales an image so that it fits
``scale`` (long side / short side) or by ``scale_factor``; the rounded
size of the short side of a very elongated image (1x5000 to (2048, 512),
2x3000 to (128, 128), 1x2000 by 0.25) is then 0, and OpenCV stops with
``error: (-215:Assertion failed) !dsize.empty()`` without naming the
image. :class:`ClampedResize` computes the same size and keeps every side
at least ``min_size`` pixels (the long side keeps its scaled size; the
aspect ratio is kept as far as whole pixels allow), so such an image is
predicted like any other; the label comes back at the original size as
usual. The
shipped configs' test and ``--tta`` pipelines use it in place of
``Resize``.
"""
from typing import Optional, Tuple

import mmcv
from mmcv.transforms import Resize
from mmseg.registry import TRANSFORMS

__all__ = ['ClampedResize', 'kept_ratio_size']


def kept_ratio_size(hw: Tuple[int, int],
                    scale: Tuple[int, int],
                    scale_factor: Optional[float] = None,
                    min_size: int = 1) -> Tuple[int, int]:
    """``(w, h)`` that ``Resize(keep_ratio=True)`` gives an ``hw`` image, each
    side at least ``min_size`` pixels.

    Args:
        hw (tuple): Image (height, width).
        scale (tuple): ``results['scale']``: the target (w, h) box.
        scale_factor (float, optional): The transform's own factor (used
            instead of ``scale`` when the transform has no ``scale``).
        min_size (int): The smallest side, in pixels.

    Returns:
        tuple: (width, height), both >= ``min_size``.
    """
    h, w = hw
    if scale_factor is None and min(scale) > 0:
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    elif scale_factor is None:  # a scale_factor's box lost its short side
        factor = max(scale) / max(h, w)
    else:
        factor = float(scale_factor)
    return (max(min_size,
                int(w * factor + 0.5)), max(min_size, int(h * factor + 0.5)))


@TRANSFORMS.register_module()
class ClampedResize(Resize):
    """mmcv's ``Resize``; with ``keep_ratio=True`` no side becomes less than
    ``min_size`` pixels (see module).

    Args:
        min_size (int): The smallest side after resizing. Default: 2, since
            MMSeg's ``PackSegInputs`` cannot pack a horizontally flipped
            image one pixel wide (numpy calls it contiguous although its
            stride is negative), which ``--tta`` makes.
        **kwargs: The arguments of ``Resize``; images whose sides stay at
            least ``min_size`` pixels are resized exactly as ``Resize``
            does.
    """

    def __init__(self, min_size: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_size = min_size

    def transform(self, results: dict) -> dict:
        keep_ratio = self.keep_ratio
        try:
            return super().transform(results)
        finally:
            self.keep_ratio = keep_ratio

    def _resize_img(self, results: dict) -> None:
        img = results.get('img')
        if img is not None and self.keep_ratio:
            h, w = img.shape[:2]
            new_w, new_h = mmcv.rescale_size((w, h), results['scale'])
            if min(new_w, new_h) < self.min_size:
                factor = None
                if not self.scale and isinstance(self.scale_factor, float):
                    factor = self.scale_factor
                results['scale'] = kept_ratio_size((h, w), results['scale'],
                                                   factor, self.min_size)
                # this call: the exact size, for the image and its labels
                self.keep_ratio = False
        super()._resize_img(results)
