"""The per-output ATM masks of one image, ready to draw.

SegViT's masks are readable: each class query's mask is the similarity
between that query and every token of a backbone stage (paper Sec. 3.2).
:func:`atm_outputs` keeps every output of ``ATMHead.forward`` for one image
(per stage, or per decoder layer with ``mask_mode='per_layer'``), where the
segmentor's ``predict`` keeps only the last; :func:`rank_classes` picks the
classes worth drawing.
"""
from typing import List, NamedTuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['AtmOutputs', 'atm_outputs', 'rank_classes', 'output_titles']


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
def atm_outputs(model: torch.nn.Module, image: Union[str, np.ndarray,
                                                     dict]) -> AtmOutputs:
    """Run the backbone and ATMHead on one image and keep every output.

    The masks come from one pass of the head over the whole (test-pipeline
    resized) image, also for models that predict with sliding windows.

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

    Raises:
        TypeError: If the decode head is not an ATMHead.
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

    Raises:
        ValueError: If ``topk < 1``.
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


def output_titles(num_outputs: int, mask_mode: str) -> List[str]:
    """Names of the outputs of ``ATMHead.forward``.

    Args:
        num_outputs (int): L, the number of outputs.
        mask_mode (str): The head's ``mask_mode``: ``'cumulative'`` outputs
            are the cumulative masks after stage 1, stages 1-2, ...;
            ``'per_layer'`` outputs one mask per decoder layer.

    Returns:
        list[str]: One title per output.
    """
    if mask_mode == 'per_layer':
        return [f'layer {i + 1}' for i in range(num_outputs)]
    return ['stage 1'] + [f'stages 1-{i + 1}' for i in range(1, num_outputs)]
