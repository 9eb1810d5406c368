"""What a caller of an exported graph does around it: the config's test
pipeline before, mmseg's post-processing after.

An exported graph (:class:`~mmseg_segvit.deploy.SegmentorForExport`) maps a
normalised image batch to scores at that batch's size. ``inference_model``
and ``mim test`` also resize the image as the config's test pipeline says
(e.g. ``Resize(scale=(2048, 512), keep_ratio=True)``), normalise it with
the data preprocessor (mean, std, BGR to RGB, padding where its
``test_cfg`` asks for it), and, after the model, crop that padding, resize
the scores back to the image's size (bilinear) and take the arg-max
(``BaseSegmentor.postprocess_result``). :func:`prepare_inputs` and
:func:`predict_labels` do these two steps with mmseg's own pipeline and
data preprocessor, so that ``graph(prepare_inputs(...))`` followed by
:func:`predict_labels` gives ``inference_model``'s labels.
"""
from typing import Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..utils.config_pipeline import load_for_test

__all__ = ['prepare_inputs', 'predict_labels']


def prepare_inputs(cfg, image: Union[str,
                                     np.ndarray]) -> Tuple[np.ndarray, dict]:
    """One image as the exported graph takes it, and what
    :func:`predict_labels` needs to undo.

    Runs the config's test pipeline (``test_pipeline``, as
    ``inference_model``; see
    :func:`~mmseg_segvit.utils.config_pipeline.load_for_test`) and the
    model's data preprocessor (``model.data_preprocessor``: normalisation,
    channel order and the test-time padding it is configured with), built
    from the config without the model's weights.

    Args:
        cfg: The model's config (an mmengine ``Config``).
        image (str | np.ndarray): A file, or an array as OpenCV gives it
            (BGR).

    Returns:
        tuple: ``inputs``, a float32 array (1, 3, H, W) for the graph's
        ``inputs``, and the sample's meta information (``ori_shape``,
        ``img_shape``, ``padding_size``, ...).
    """
    from mmseg.registry import MODELS
    data, _ = load_for_test(cfg, image)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    with torch.no_grad():
        batch = preprocessor(data, training=False)
    inputs = batch['inputs'].float().numpy()
    return inputs, dict(batch['data_samples'][0].metainfo)


def predict_labels(scores: Union[np.ndarray, torch.Tensor],
                   meta: dict,
                   align_corners: bool = False) -> np.ndarray:
    """Labels at the image's size from the graph's ``scores`` output, as
    mmseg's ``BaseSegmentor.postprocess_result`` makes them.

    Args:
        scores (np.ndarray | Tensor): The graph's (1, K, H, W) scores for
            the inputs of :func:`prepare_inputs`.
        meta (dict): The meta information :func:`prepare_inputs` returned.
        align_corners (bool): The decode head's ``align_corners``.
            Default: False.

    Returns:
        np.ndarray: (H_image, W_image) int64 labels.

    Raises:
        ValueError: ``scores`` is no (1, K, H, W) array (a ``labels``
            export cannot be resized as PyTorch resizes scores: export
            ``--output scores``).
    """
    scores = torch.as_tensor(np.asarray(scores))
    if scores.dim() != 4 or scores.shape[0] != 1:
        raise ValueError(
            f'predict_labels takes the (1, K, H, W) scores of one image, got '
            f'shape {tuple(scores.shape)}; labels (an --output labels '
            'export) cannot be brought back to the image size as PyTorch '
            'does (it resizes the scores): export --output scores')
    left, right, top, bottom = meta.get('img_padding_size',
                                        meta.get('padding_size', [0] * 4))
    h, w = scores.shape[-2:]
    scores = scores[:, :, top:h - bottom, left:w - right]
    scores = F.interpolate(
        scores.float(),
        size=tuple(meta['ori_shape'][:2]),
        mode='bilinear',
        align_corners=align_corners)
    return scores[0].argmax(0).numpy()
