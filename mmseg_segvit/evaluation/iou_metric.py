"""An IoU metric that says which classes its mean leaves out or scores 0.

MMSeg's ``IoUMetric`` averages the per-class IoU with ``np.nanmean``. A
class that occurs in no label of the evaluated images and is never
predicted has IoU 0/0 = ``nan`` and drops out of the mean; one that is
predicted but occurs in no label scores 0. So binary masks saved as 0/255
(the object class is ignored) give "mIoU 100.00": the mean of the
background alone. :class:`CheckedIoUMetric` computes the same numbers and,
when any listed class has no pixel in the labels, logs next to the
per-class table which classes these are and how each entered the means,
and adds ``classes_in_labels`` (how many classes the labels hold) to the
returned metrics, so the summary line that prints the mIoU shows it too.
"""
from typing import Dict, Optional, Sequence

import numpy as np
from mmengine.logging import MMLogger, print_log
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS

__all__ = ['CheckedIoUMetric', 'absent_class_note']


def absent_class_note(classes: Sequence[str],
                      area_label: np.ndarray,
                      area_pred: np.ndarray,
                      nan_to_num: Optional[float] = None) -> Optional[str]:
    """What the means do with classes that occur in no label, or None.

    Args:
        classes (Sequence[str]): Class names, (K,).
        area_label (np.ndarray): Label pixels per class, (K,).
        area_pred (np.ndarray): Predicted pixels per class, (K,).
        nan_to_num (float, optional): ``IoUMetric``'s replacement for nan.

    Returns:
        str | None: A message naming them, or None when every class occurs.
    """
    area_label = np.asarray(area_label)
    area_pred = np.asarray(area_pred)
    absent = np.flatnonzero(area_label == 0)
    if absent.size == 0:
        return None
    unseen = [classes[i] for i in absent if area_pred[i] == 0]
    predicted = [classes[i] for i in absent if area_pred[i] > 0]
    present = len(classes) - absent.size
    parts = [
        f'{absent.size} of the {len(classes)} classes occur in no label '
        'of the evaluated images, so mIoU and the other means are not '
        f'over all classes ({present} occur):'
    ]
    if unseen:
        fate = ('left out of the means (IoU nan)' if nan_to_num is None else
                f'counted as {nan_to_num} (nan_to_num)')
        parts.append(f'never predicted either, {fate}: {_shown(unseen)};')
    if predicted:
        parts.append('predicted, IoU 0 counted in mIoU and left out of mAcc '
                     f'(Acc nan): {_shown(predicted)};')
    parts[-1] = parts[-1].rstrip(';') + '.'
    return ' '.join(parts)


def _shown(names: Sequence[str], limit: int = 10) -> str:
    text = ', '.join(repr(str(n)) for n in names[:limit])
    return text + (f' and {len(names) - limit} more'
                   if len(names) > limit else '')


@METRICS.register_module()
class CheckedIoUMetric(IoUMetric):
    """``IoUMetric`` that names the classes absent from the labels.

    Takes ``IoUMetric``'s arguments and returns its metrics, plus
    ``classes_in_labels`` (the number of classes with label pixels) when some
    listed class has none; then a warning naming those classes and how the
    means treated them (:func:`absent_class_note`) is logged after the per-
    class table.
    """

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)
        if self.format_only or not results:
            return metrics
        area_pred = sum(r[2] for r in results)
        area_label = sum(r[3] for r in results)
        classes = self.dataset_meta['classes']
        note = absent_class_note(classes, _numpy(area_label),
                                 _numpy(area_pred), self.nan_to_num)
        if note is not None:
            print_log(
                note, logger=MMLogger.get_current_instance(),
                level=30)  # logging.WARNING
            metrics['classes_in_labels'] = int((_numpy(area_label) > 0).sum())
        return metrics


def _numpy(x) -> np.ndarray:
    return x.cpu().numpy() if hasattr(x, 'cpu') else np.asarray(x)
