"""Build a segmentor from a config and load any checkpoint layout into it.

``mmseg.apis.init_model`` reads ``checkpoint['meta']``: a bare state dict
(``torch.save(model.state_dict())``) or a file without ``meta`` stops with
``KeyError: 'meta'``, and a ``meta`` without class names gets the classes
of whichever dataset has the same count, else Cityscapes'. :func:`init_model`
takes the same arguments and accepts every layout users save: mmengine's
checkpoints (``state_dict`` + ``meta``, with or without ``dataset_meta``,
EMA checkpoints), ``{'state_dict': ...}`` or ``{'model': ...}`` without
``meta``, a bare state dict, ``module.``-prefixed (DDP) keys, mmengine's
``ema_state_dict`` alone and ``.safetensors`` files. Files are read with
``weights_only=True`` (:func:`~mmseg_segvit.checkpoints.load_weights_file`).
Class names come from the file when it has one per class, else from the
config's dataset (:func:`~mmseg_segvit.checkpoints.checkpoint_dataset_meta`).
"""
import copy
from pathlib import Path
from typing import Any, Optional, Union

import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_state_dict
from mmseg.registry import MODELS

from ..checkpoints import (checkpoint_dataset_meta, get_state_dict,
                           load_weights_file)

__all__ = ['init_model', 'load_segmentor_weights', 'head_num_classes']


def head_num_classes(model: nn.Module) -> Optional[int]:
    """``num_classes`` of a segmentor's decode head (the last of a cascade), or
    None."""
    head = getattr(model, 'decode_head', None)
    if isinstance(head, (nn.ModuleList, list, tuple)):
        head = head[-1]
    num = getattr(head, 'num_classes', None)
    return int(num) if num is not None else None


def load_segmentor_weights(model: nn.Module,
                           checkpoint: Any,
                           cfg,
                           path: str = '<checkpoint>') -> str:
    """Load a checkpoint of any layout (see module) into ``model`` and set
    ``model.dataset_meta``.

    Args:
        model (nn.Module): The segmentor, built from ``cfg``.
        checkpoint: The loaded file (a mapping).
        cfg: The config ``model`` was built from.
        path (str): The file, for messages.

    Returns:
        str: Where the class names came from.
    """
    state_dict = get_state_dict(checkpoint, path)
    logger = MMLogger.get_current_instance()
    load_state_dict(model, state_dict, strict=False, logger=logger)
    num_classes = head_num_classes(model)
    if num_classes is None:
        return 'no decode head with num_classes: no class names set'
    meta, note = checkpoint_dataset_meta(checkpoint, cfg, num_classes)
    model.dataset_meta = meta
    return note


def init_model(config: Union[str, Path, Config],
               checkpoint: Optional[str] = None,
               device: str = 'cuda:0',
               cfg_options: Optional[dict] = None) -> nn.Module:
    """``mmseg.apis.init_model`` for every checkpoint layout (see module).

    Args:
        config (str | Path | Config): Config file or config.
        checkpoint (str, optional): Checkpoint file; None leaves the
            weights random (class names from the config's dataset).
        device (str): Where the model goes. Default: ``'cuda:0'``.
        cfg_options (dict, optional): Settings merged into the config.

    Returns:
        nn.Module: The segmentor in eval mode, with ``cfg`` and
        ``dataset_meta`` set.

    Raises:
        FileNotFoundError: No file at ``checkpoint``.
        UnsafeCheckpointError: A file ``weights_only`` loading refuses.
        TypeError: A file that holds no dict of tensors.
    """
    if isinstance(config, (str, Path)):
        config = Config.fromfile(str(config))
    elif not isinstance(config, Config):
        raise TypeError(f'config must be a file name or a Config, not '
                        f'{type(config).__name__}')
    config = copy.deepcopy(config)
    if cfg_options:
        config.merge_from_dict(cfg_options)
    for part in ('backbone', 'decode_head', 'auxiliary_head', 'neck'):
        sub = config.model.get(part)
        if isinstance(sub, dict) and 'init_cfg' in sub:
            sub.init_cfg = None
    config.model.pretrained = None
    config.model.train_cfg = None
    init_default_scope(config.get('default_scope', 'mmseg'))
    model = MODELS.build(config.model)
    if checkpoint is not None:
        load_segmentor_weights(model, load_weights_file(str(checkpoint)),
                               config, str(checkpoint))
    else:
        num_classes = head_num_classes(model)
        if num_classes is not None:
            model.dataset_meta = checkpoint_dataset_meta(
                None, config, num_classes)[0]
    model.cfg = config
    model.to(device)
    model.eval()
    return model
