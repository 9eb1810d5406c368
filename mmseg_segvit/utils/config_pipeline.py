"""Read an image the way the model's config does, and keep what it saw.

A tool that decodes images itself (always 3 channels, its own loader) feeds a
model whose config reads images differently (grayscale, 4 channels, 16 bits,
another decoder) other pixels than ``inference_model`` and the test loop do, or
crashes. :func:`load_for_test` runs the config's own test pipeline, as
``mmseg.apis.inference_model`` does, and also returns the image as the
pipeline's loading step decoded it, so that pictures show what the model saw;
:func:`displayable` turns that into an RGB picture.

Configs build their pipelines with :func:`clamped_resize` (one stock
pipeline) or :func:`clamped_resize_pipelines` (a stock config's three):
MMSeg's pipelines with the package's ``ClampedResize`` for ``Resize``.
"""
import copy
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    'config_test_pipeline', 'load_for_test', 'displayable', 'clamped_resize',
    'clamped_resize_pipelines'
]

Image = Union[str, np.ndarray, dict]


def _clamped_step(step: Mapping[str, Any]) -> dict:
    """One pipeline step of :func:`clamped_resize`."""
    if not isinstance(step, Mapping):
        raise TypeError(f'a pipeline step should be a dict, not {step!r}')
    kind = step.get('type')
    if kind == 'Resize':
        return dict(step, type='ClampedResize')
    resizes_with_resize = step.get('resize_type', 'Resize') == 'Resize'
    if kind == 'RandomResize' and resizes_with_resize:
        return dict(step, resize_type='ClampedResize')
    if kind == 'TestTimeAug':
        return dict(
            step,
            transforms=[clamped_resize(views) for views in step['transforms']])
    return step


def clamped_resize(pipeline: Sequence[Mapping[str, Any]]) -> list:
    """A pipeline with ``ClampedResize`` for mmcv's ``Resize``: no side of a
    very elongated image is resized to 0 pixels (see
    :mod:`mmseg_segvit.datasets.transforms`).

    What configs write on a stock MMSeg pipeline
    (``train_pipeline = clamped_resize(_base_.train_pipeline)``). Each
    ``Resize`` step becomes ``ClampedResize`` with the same arguments; each
    ``RandomResize`` that resizes with ``Resize`` (its default
    ``resize_type``) resizes with ``ClampedResize``; a ``TestTimeAug``
    step gets each of its ``transforms`` lists rewritten the same way. Other
    steps, and the order, stay as they are; the steps given are not
    changed.

    Args:
        pipeline (Sequence[dict]): Transform configs (dicts or
            ``ConfigDict`` with a ``type``).

    Returns:
        list: The rewritten steps: a new dict for each step that changed,
        the given one otherwise.

    Raises:
        TypeError: A step (or a ``TestTimeAug`` view) is not a dict.
    """
    return [_clamped_step(step) for step in pipeline]


def clamped_resize_pipelines(
        cfg: Mapping[str, Any]) -> Tuple[list, list, list]:
    """A stock MMSeg config's ``train_pipeline``, ``test_pipeline`` and
    ``tta_pipeline``, each through :func:`clamped_resize`.

    For a config that inherits a stock config and keeps its data settings::

        pipelines = clamped_resize_pipelines(_base_)
        train_pipeline, test_pipeline, tta_pipeline = pipelines

    Args:
        cfg (Mapping): The config (in a config file: ``_base_``).

    Returns:
        tuple: (train, test, TTA) pipelines, as lists.

    Raises:
        KeyError: The config lacks one of the three pipelines.
    """
    return tuple(
        clamped_resize(cfg[key])
        for key in ('train_pipeline', 'test_pipeline', 'tta_pipeline'))


def config_test_pipeline(cfg) -> list:
    """The config's test pipeline: ``test_pipeline`` (what ``inference_model``
    runs), else the test dataset's pipeline.

    Raises:
        ValueError: The config has neither, or it does not start by
            loading an image.
    """
    steps = cfg.get('test_pipeline')
    if not steps:
        dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
        steps = dataset.get('pipeline')
    if not steps:
        raise ValueError('the config has no test_pipeline (nor '
                         'test_dataloader.dataset.pipeline) to read images '
                         'with')
    steps = [copy.deepcopy(dict(t)) for t in steps]
    first = steps[0].get('type')
    if not isinstance(first, str) or 'LoadImage' not in first:
        raise ValueError('the config\'s test pipeline should start with an '
                         f'image loading step, not {first!r}')
    return steps


def load_for_test(
        cfg,
        image: Image,
        pipeline: Optional[Sequence[dict]] = None) -> Tuple[dict, np.ndarray]:
    """Run the config's test pipeline on one image.

    Args:
        cfg: The model's config (``model.cfg``).
        image (str | np.ndarray | dict): A file, read by the pipeline's own
            loading step; an array (BGR as OpenCV gives it), given to
            ``LoadImageFromNDArray`` with the loading step's other
            settings, as ``inference_model`` does; or a dataset's data info
            (``img_path``, ``seg_map_path``, ...), whose annotations are
            then loaded too.
        pipeline (Sequence[dict], optional): Steps to use instead of
            :func:`config_test_pipeline`.

    Returns:
        tuple: ``data`` (``dict(inputs=[...], data_samples=[...])``, for
        ``model.test_step`` or the data preprocessor) and the image as the
        loading step decoded it, before any resize: (H, W) or (H, W, C),
        in the loader's channel order and dtype.
    """
    from mmengine.dataset import Compose
    steps = ([copy.deepcopy(dict(t)) for t in pipeline]
             if pipeline is not None else config_test_pipeline(cfg))
    if isinstance(image, dict):
        results = copy.deepcopy(image)
        keep_annotations = bool(results.get('seg_map_path'))
    elif isinstance(image, np.ndarray):
        results = dict(img=image)
        keep_annotations = False
        steps[0]['type'] = 'LoadImageFromNDArray'
    else:
        results = dict(img_path=str(image))
        keep_annotations = False
    if not keep_annotations:
        steps = [t for t in steps if t.get('type') != 'LoadAnnotations']
    loaded = None
    for transform in Compose(steps).transforms:
        results = transform(results)
        if results is None:
            raise ValueError(f'the test pipeline step {transform!r} dropped '
                             'the image')
        if loaded is None and 'img' in results:
            loaded = np.array(results['img'], copy=True)
    if loaded is None or 'inputs' not in results:
        raise ValueError('the test pipeline did not load and pack the image '
                         '(it should end with PackSegInputs)')
    return dict(
        inputs=[results['inputs']],
        data_samples=[results['data_samples']]), loaded


def displayable(image: np.ndarray, channel_order: str = 'bgr') -> np.ndarray:
    """An image as a loading step gives it, as an RGB uint8 picture.

    Grayscale (2-D or one channel) is repeated over R, G and B; 3 channels
    are taken in ``channel_order``; 4 channels (BGRA) lose alpha; other
    channel counts show their first channel. Other dtypes than uint8 are
    scaled from their range to 0-255.

    Returns:
        np.ndarray: (H, W, 3) uint8, RGB.
    """
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f'an image should be (H, W) or (H, W, C), got '
                         f'{image.shape}')
    channels = image.shape[-1]
    if channels in (3, 4):
        image = image[..., :3]
        if channel_order == 'bgr':
            image = image[..., ::-1]
    else:
        image = np.repeat(image[..., :1], 3, axis=-1)
    if image.dtype != np.uint8:
        image = image.astype(np.float64)
        low, high = image.min(), image.max()
        scale = 255.0 / (high - low) if high > low else 0.0
        image = ((image - low) * scale).round().astype(np.uint8)
    return np.ascontiguousarray(image)
