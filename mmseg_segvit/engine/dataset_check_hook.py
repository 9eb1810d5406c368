"""Refuse a run whose model and datasets disagree, before it starts.

The fine-tuning recipe asks for the class count twice: the head's
``num_classes`` and the dataset's ``metainfo`` classes. MMSeg's metric
counts the dataset's classes and the head predicts its own, so a mismatch
trains and validates without a word (a class shows ``nan``, or a class the
model predicts has no name). :class:`DatasetCheckHook` compares them at
``before_run``, the first point of ``runner.train()``, ``runner.val()`` and
``runner.test()`` (``mim train``, ``mim test``, ``--tta``) where the model
and the datasets of the run are both built and no weight is loaded yet.
It then checks a sample of each dataset's label maps
(:func:`~mmseg_segvit.datasets.check_label_values`) unless the dataset did
it when it was built (``CheckedSegDataset``, the demo dataset).
"""
from typing import Iterator, List, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ..datasets.label_values import check_label_values

__all__ = ['DatasetCheckHook', 'head_class_counts']


def _unwrap(model):
    while is_model_wrapper(model) or (hasattr(model, 'module')
                                      and not hasattr(model, 'decode_head')):
        model = model.module  # DDP, and MMSeg's TTA model
    return model


def head_class_counts(model) -> List[Tuple[str, int]]:
    """``[(setting, num_classes)]`` of a segmentor's decode and auxiliary
    heads, e.g. ``[('model.decode_head.num_classes', 150)]``."""
    model = _unwrap(model)
    counts = []
    for name in ('decode_head', 'auxiliary_head'):
        heads = getattr(model, name, None)
        if heads is None:
            continue
        many = isinstance(heads, (list, tuple)) or hasattr(heads, '__len__')
        for i, head in enumerate(heads if many else [heads]):
            num = getattr(head, 'num_classes', None)
            if num is not None:
                where = f'model.{name}[{i}]' if many else f'model.{name}'
                counts.append((f'{where}.num_classes', int(num)))
    return counts


def _leaf_datasets(dataset) -> Iterator:
    """The datasets inside mmengine's wrappers (Concat, Repeat, ...)."""
    if hasattr(dataset, 'datasets'):
        for inner in dataset.datasets:
            yield from _leaf_datasets(inner)
    elif hasattr(dataset, 'dataset') and not hasattr(dataset, 'data_prefix'):
        yield from _leaf_datasets(dataset.dataset)
    else:
        yield dataset


def _built_datasets(runner) -> Iterator[Tuple[str, object]]:
    """``(dataloader name, dataset)`` of the loops this run has built (a loop
    still given as a config is not built here)."""
    for name in ('train', 'val', 'test'):
        loop = getattr(runner, f'_{name}_loop', None)
        loader = getattr(loop, 'dataloader', None)
        dataset = getattr(loader, 'dataset', None)
        if dataset is not None:
            for leaf in _leaf_datasets(dataset):
                yield f'{name}_dataloader', leaf


@HOOKS.register_module()
class DatasetCheckHook(Hook):
    """Compare the model's class count with each dataset's class list, and
    check what the label maps hold, before a run starts.

    Args:
        check_labels (bool): Also check a sample of each dataset's label
            maps (:func:`~mmseg_segvit.datasets.check_label_values`).
            Default: True.

    Raises:
        ValueError: At ``before_run``, a head whose ``num_classes`` is not
            the number of classes in a dataset's ``metainfo``, naming both
            settings; :class:`~mmseg_segvit.datasets.LabelValuesError` for
            label maps that cannot be what the config says.
    """
    priority = 'VERY_HIGH'

    def __init__(self, check_labels: bool = True) -> None:
        self.check_labels = check_labels

    def before_run(self, runner) -> None:
        counts = head_class_counts(runner.model)
        if not counts:
            return
        for loader, dataset in _built_datasets(runner):
            classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
            if classes is None:
                continue
            for setting, num in counts:
                if num != len(classes):
                    shown = ', '.join(repr(c) for c in list(classes)[:5])
                    more = ', ...' if len(classes) > 5 else ''
                    raise ValueError(
                        f'{setting} is {num} but {loader}.dataset '
                        f'({type(dataset).__name__}) lists {len(classes)} '
                        f'classes in its metainfo ({shown}{more}): the '
                        'metric scores the dataset\'s classes and the model '
                        'predicts its own. Set both to the same classes: '
                        f'{setting} and {loader}.dataset.metainfo='
                        'dict(classes=..., palette=...)')
            if self.check_labels and getattr(
                    dataset, '_fully_initialized', True) and not getattr(
                        dataset, 'label_values_checked', False):
                check_label_values(dataset, num_classes=len(classes))
                dataset.label_values_checked = True
