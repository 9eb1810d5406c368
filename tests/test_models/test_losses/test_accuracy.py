"""label_accuracy: MMSeg's accuracy from predicted labels."""
import pytest
import torch
from mmseg.models.losses import accuracy

from mmseg_segvit.models.losses import label_accuracy


def test_label_accuracy_equals_mmseg_accuracy():
    torch.manual_seed(2)
    scores = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, 0] = 255
    for ignore in (255, None):
        want = accuracy(
            scores,
            target.clamp(max=3) if ignore is None else target,
            ignore_index=ignore)
        got = label_accuracy(
            scores.argmax(1),
            target.clamp(max=3) if ignore is None else target, ignore)
        torch.testing.assert_close(got, want)
    perfect = label_accuracy(target, target, 255)
    torch.testing.assert_close(perfect, torch.tensor([100.0]))
    ignored = torch.full_like(target, 255)  # MMSeg gives eps / eps
    torch.testing.assert_close(
        label_accuracy(target, ignored, 255),
        accuracy(scores, ignored, ignore_index=255))
    with pytest.raises(ValueError, match='differ in shape'):
        label_accuracy(target[:, :4], target)
