"""Class names and palette for a checkpoint (``meta['dataset_meta']``).

``mmseg.apis.init_model`` and ``MMSegInferencer`` take the class names and
colours from ``checkpoint['meta']['dataset_meta']``; without them they
guess a dataset from the class count or fall back to Cityscapes' 19
classes, so a 171-class model is labelled with wrong names and classes
>= 19 are drawn without colour. The released SegViT files (mmseg 0.24)
carry ``meta['CLASSES']`` and ``meta['PALETTE']``; the converter keeps them
as ``dataset_meta`` (:func:`converted_dataset_meta`), or takes the
config's dataset's (:func:`config_dataset_meta`) when the file has none.
:func:`checkpoint_dataset_meta` does the same for any checkpoint layout
users save (a bare state dict, no ``meta``, ``meta`` without
``dataset_meta``), for this package's ``init_model`` and inferencer.
"""
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    'config_dataset_meta', 'converted_dataset_meta', 'checkpoint_dataset_meta',
    'fitting_palette', 'generated_palette'
]

Palette = List[List[int]]


def _dataset_cfg(cfg) -> Optional[Mapping]:
    """The dataset config of the test (else val, train) dataloader, inside
    dataset wrappers (``dataset=`` / ``datasets=[...]``)."""
    for name in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        loader = cfg.get(name) if hasattr(cfg, 'get') else None
        dataset = loader.get('dataset') if loader else None
        while isinstance(dataset, Mapping):
            if 'dataset' in dataset:
                dataset = dataset['dataset']
            elif dataset.get('datasets'):
                dataset = dataset['datasets'][0]
            else:
                return dataset
    return None


def config_dataset_meta(cfg) -> Optional[dict]:
    """``dict(classes=..., palette=...)`` of the dataset a config tests on.

    The dataset config's own ``metainfo`` wins over its class's
    ``METAINFO`` (as in mmengine's datasets). A palette is returned only if
    it has one colour per class.

    Returns:
        dict | None: None when the config names no classes.
    """
    dataset = _dataset_cfg(cfg)
    if dataset is None:
        return None
    meta = {}
    dataset_type = dataset.get('type')
    if isinstance(dataset_type, str):
        from mmseg.registry import DATASETS
        try:
            dataset_type = DATASETS.get(dataset_type)
        except KeyError:
            dataset_type = None
    meta.update(getattr(dataset_type, 'METAINFO', None) or {})
    meta.update(dataset.get('metainfo') or {})
    classes = meta.get('classes')
    if not classes:
        return None
    palette = fitting_palette(meta.get('palette'), len(classes))
    return dict(classes=tuple(classes), palette=palette)


def fitting_palette(palette, num_classes: int) -> Optional[Palette]:
    """``palette`` as a list of ``[r, g, b]`` ints, or None unless it has
    ``num_classes`` colours."""
    if palette is None:
        return None
    try:
        colours = np.asarray(palette, dtype=np.int64)
    except (TypeError, ValueError):
        return None
    if colours.shape != (num_classes, 3):
        return None
    return colours.clip(0, 255).tolist()


def generated_palette(num_classes: int) -> Palette:
    """A fixed colour per class (the same for every call)."""
    rng = np.random.RandomState(42)
    return rng.randint(0, 256, (num_classes, 3)).tolist()


def converted_dataset_meta(official_meta: Mapping, cfg,
                           num_classes: int) -> Tuple[dict, str]:
    """The ``dataset_meta`` of a converted checkpoint.

    Class names: the official file's ``CLASSES`` if it has ``num_classes``
    of them, else the config's dataset's (:func:`config_dataset_meta`) if
    they fit, else ``class 0``, ``class 1``, ... Palette: the official
    ``PALETTE`` if it fits, else the config dataset's if it fits, else
    :func:`generated_palette`.

    Args:
        official_meta (Mapping): ``meta`` of the official checkpoint.
        cfg: The config the checkpoint is converted for.
        num_classes (int): Classes of the converted model.

    Returns:
        tuple: ``dict(classes=tuple, palette=list)`` and a note saying
        where they came from.
    """
    official_meta = official_meta or {}
    from_config = config_dataset_meta(cfg) or {}
    config_fits = len(from_config.get('classes', ())) == num_classes

    classes: Optional[Sequence[str]] = official_meta.get('CLASSES')
    if classes is not None and len(classes) == num_classes:
        source = 'the official file'
    elif config_fits:
        classes = from_config['classes']
        source = "the config's dataset"
    else:
        classes = tuple(f'class {i}' for i in range(num_classes))
        source = 'neither the official file nor the config (numbered)'
    palette = fitting_palette(official_meta.get('PALETTE'), num_classes)
    palette_source = 'the official file'
    if palette is None and config_fits and from_config['palette']:
        palette = from_config['palette']
        palette_source = "the config's dataset"
    if palette is None:
        palette, palette_source = generated_palette(num_classes), 'generated'
    note = (f'dataset_meta: {num_classes} class names from {source}, '
            f'palette from {palette_source}')
    return dict(classes=tuple(str(c) for c in classes), palette=palette), note


def checkpoint_dataset_meta(checkpoint, cfg,
                            num_classes: int) -> Tuple[dict, str]:
    """Class names and palette for a model loaded from ``checkpoint``.

    The checkpoint's ``meta['dataset_meta']`` (mmseg 1.x) or
    ``meta['CLASSES']`` / ``meta['PALETTE']`` (mmseg 0.x) when they have
    ``num_classes`` entries; otherwise the config's dataset's, then
    numbered names and a generated palette (as
    :func:`converted_dataset_meta`). A bare state dict, a checkpoint
    without ``meta`` and a ``meta`` without class names all take the
    config's.

    Args:
        checkpoint: The loaded file (any mapping; None for no file).
        cfg: The model's config.
        num_classes (int): Classes of the model's head.

    Returns:
        tuple: ``dict(classes=tuple, palette=list)`` and a note saying
        where they came from.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    dataset_meta = meta.get('dataset_meta')
    dataset_meta = dataset_meta if isinstance(dataset_meta, Mapping) else {}
    found = dict(
        CLASSES=dataset_meta.get('classes', meta.get('CLASSES')),
        PALETTE=dataset_meta.get('palette', meta.get('PALETTE')))
    result, note = converted_dataset_meta(found, cfg, num_classes)
    return result, note.replace('the official file', 'the checkpoint')
