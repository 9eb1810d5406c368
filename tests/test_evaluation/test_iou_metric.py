"""mIoU says which classes it leaves out or scores 0 for want of labels."""
import logging

import numpy as np
import torch
from mmengine.logging import MMLogger
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
from mmseg.structures import SegDataSample

from mmseg_segvit.evaluation import CheckedIoUMetric, absent_class_note

CLASSES = ('background', 'object', 'sky')


def _sample(pred, label):
    sample = SegDataSample()
    sample.pred_sem_seg = PixelData(data=torch.as_tensor(pred)[None])
    sample.gt_sem_seg = PixelData(data=torch.as_tensor(label)[None])
    return sample.to_dict()


def _evaluate(metric, pairs):
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [_sample(p, l) for p, l in pairs])
    return metric.evaluate(len(pairs))


def _pairs():
    label = torch.zeros(8, 8, dtype=torch.long)
    label[:, 4:] = 255  # the object, saved as 255: ignored
    pred = torch.zeros(8, 8, dtype=torch.long)
    pred[0, 0] = 2  # sky predicted once, never in the labels
    return [(pred, label)]


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_the_numbers_are_iou_metrics_and_the_absent_classes_are_named():
    plain = _evaluate(IoUMetric(), _pairs())
    logger = MMLogger.get_current_instance()
    records = _Records()
    logger.addHandler(records)
    try:
        checked = _evaluate(CheckedIoUMetric(), _pairs())
    finally:
        logger.removeHandler(records)
    assert plain['mIoU'] == 48.44  # (96.88 + 0) / 2: 'object' left out
    assert {k: checked[k] for k in plain} == plain
    assert checked['classes_in_labels'] == 1
    text = '\n'.join(records.messages)
    assert '2 of the 3 classes occur in no label' in text
    assert "left out of the means (IoU nan): 'object'" in text
    assert "predicted, IoU 0 counted in mIoU and left out of mAcc " \
        "(Acc nan): 'sky'." in text


def test_nothing_is_added_when_every_class_occurs():
    label = torch.tensor([[0, 1], [2, 2]])
    result = _evaluate(CheckedIoUMetric(), [(label, label)])
    assert result['mIoU'] == 100.0
    assert 'classes_in_labels' not in result


def test_note_says_what_nan_to_num_does():
    note = absent_class_note(
        CLASSES, np.array([5, 0, 3]), np.array([5, 0, 3]), nan_to_num=0)
    assert "counted as 0 (nan_to_num): 'object'" in note
    assert absent_class_note(CLASSES, np.ones(3), np.ones(3)) is None
