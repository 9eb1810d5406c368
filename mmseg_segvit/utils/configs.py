"""The package's config files and the models they build.

:func:`config_dir` finds ``configs/`` in a source checkout or in an
installed package (mim ships them as ``mmseg_segvit/.mim/configs``, see
``setup.py``); :func:`load_config` reads a config as the tools do (parsed
once per file version, ``--cfg-options`` merged, default scope set);
:func:`build_model` builds its segmentor without pretrained weights, on the
``'meta'`` device by default (structure and shapes, no memory), which is
how checkpoint converters check a state dict against a config.
"""
import contextlib
import copy
import functools
import os.path as osp
from typing import Iterator, Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from torch.overrides import TorchFunctionMode

__all__ = [
    'PACKAGE_DIR', 'config_dir', 'CONFIG_DIR', 'load_config', 'build_device',
    'build_model'
]

#: The installed (or checked-out) ``mmseg_segvit`` package folder.
PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def config_dir(package_dir: str = PACKAGE_DIR) -> str:
    """The folder holding the package's configs (``_base_``, ``segvit``).

    In a source checkout (``setup.py`` next to the package): the
    checkout's ``configs/``, the files one edits. Otherwise, as in an
    installed wheel: ``<package>/.mim/configs``, where mim looks for them.

    Args:
        package_dir (str): The ``mmseg_segvit`` folder. Default: this one.

    Returns:
        str: The first of the two that exists; if neither does, the
        installed location (for messages that say where configs were
        looked for).
    """
    root = osp.dirname(osp.abspath(package_dir))
    source = osp.join(root, 'configs')
    if osp.isfile(osp.join(root, 'setup.py')) and osp.isdir(source):
        return source
    return osp.join(package_dir, '.mim', 'configs')


#: The SegViT configs (``configs/segvit``) of this installation.
CONFIG_DIR = osp.join(config_dir(), 'segvit')


@functools.lru_cache(maxsize=None)
def _parse(path: str, mtime: float) -> Config:
    return Config.fromfile(path)


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """The config at ``path`` (a copy; each file version is parsed once), with
    ``cfg_options`` (``--cfg-options``) merged, its default scope (mmseg)
    set."""
    path = osp.abspath(path)
    cfg = copy.deepcopy(_parse(path, osp.getmtime(path)))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    return cfg


class _ScalarsOnCPU(TorchFunctionMode):
    """Keep ``linspace`` on the CPU while a model is built on ``'meta'``:

    constructors read values from it (drop-path rates with ``.item()``), which
    meta tensors do not have.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.linspace and kwargs.get('device') is None:
            kwargs['device'] = 'cpu'
        return func(*args, **kwargs)


@contextlib.contextmanager
def build_device(device: str = 'meta') -> Iterator[None]:
    """Build modules on ``device`` in this context (``torch.device``), with the
    drop-path rates of mmseg's constructors still computed on the CPU, so that
    a model builds on ``'meta'``."""
    with torch.device(device), _ScalarsOnCPU():
        yield


def build_model(config: Union[str, Config],
                device: str = 'meta',
                cfg_options: Optional[dict] = None) -> nn.Module:
    """The segmentor of ``config`` without pretrained weights.

    Args:
        config (str | Config): Config file or config.
        device (str): ``'meta'`` (default) builds the structure without
            allocating or initialising weights (load weights into it with
            ``load_state_dict(..., assign=True)``); ``'cpu'`` builds a
            model that runs, with the constructors' random weights.
        cfg_options (dict, optional): Settings merged into the config.

    Returns:
        nn.Module: The model; ``init_weights`` is not called, so neither
        ``pretrained`` nor a backbone ``init_cfg`` is read.
    """
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        init_default_scope(cfg.get('default_scope', 'mmseg'))
    else:
        cfg = load_config(config, cfg_options)
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = None
    with build_device(device):
        return MODELS.build(cfg.model)
