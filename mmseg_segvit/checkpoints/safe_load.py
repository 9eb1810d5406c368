"""Load checkpoint files without running code from them.

Every file goes through ``torch.load(..., weights_only=True)`` or safetensors.
``weights_only`` unpickles tensors, containers and plain values only (plus the
numpy and mmengine types :mod:`mmseg_segvit.compat` allow-lists); a pickle that
would import or call anything else is refused with
:class:`UnsafeCheckpointError`, which names the file.
"""
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from ..typing_utils import StateDict
from .errors import ConversionError

__all__ = ['UnsafeCheckpointError', 'load_weights_file', 'get_state_dict']


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint that ``weights_only`` loading refuses."""


def load_weights_file(path: str) -> Any:
    """Read a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file safely.

    Args:
        path (str): Local file.

    Returns:
        The loaded object: a dict of tensors for safetensors, whatever the
        pickle holds (restricted to safe types) otherwise.

    Raises:
        FileNotFoundError: The file does not exist.
        UnsafeCheckpointError: The pickle needs globals outside the
            ``weights_only`` allow-list (it could run code), the file is
            no checkpoint at all, or it is empty, truncated or corrupted.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if path.endswith('.safetensors'):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(path, device='cpu')
        except SafetensorError as err:
            raise UnsafeCheckpointError(
                f'{path} is not a readable .safetensors file ({err}): it is '
                'truncated or corrupted; download or copy it again') from None
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except (EOFError, RuntimeError) as err:
        # an empty file (EOFError) or a torch zip archive cut short
        # (PytorchStreamReader's "failed finding central directory")
        if isinstance(err, RuntimeError) and \
                'PytorchStreamReader' not in str(err):
            raise
        raise UnsafeCheckpointError(
            f'{path} ({osp.getsize(path)} bytes) is truncated or corrupted '
            f'({type(err).__name__}: {str(err).split(".")[0] or "empty"}): '
            'download or copy it again') from None
    except pickle.UnpicklingError as err:
        # torch's text advises turning weights_only off: pass on its reason
        text = str(err)
        found = re.search(r'GLOBAL ([\w.]+)', text, re.IGNORECASE)
        if found is None and ('Unsupported operand' in text
                              or 'invalid load key' in text):
            raise UnsafeCheckpointError(
                f'{path} is not a readable PyTorch checkpoint (no pickle '
                'of tensors, containers and plain values): check the path '
                'and that the file is a .pth / .pt / .bin checkpoint or a '
                '.safetensors file') from None
        needs = found.group(1) if found else 'objects'
        raise UnsafeCheckpointError(
            f'refused to load {path}: its pickle needs {needs}, '
            'which weights_only=True loading does not allow (a checkpoint '
            'like this can run code when unpickled). Load only weights '
            'from sources you trust; the types this package allows are '
            'listed in docs/compatibility.md') from None


def get_state_dict(checkpoint: Any, path: str = '<checkpoint>') -> StateDict:
    """The tensors of a loaded checkpoint.

    Accepts a bare state dict or one nested under ``state_dict`` /
    ``model`` (mmengine, timm, DeiT layouts) or, without those, mmengine's
    ``ema_state_dict`` (the averaged weights, without its ``steps``
    counter); strips DDP's (and the EMA wrapper's) ``module.`` prefix. The
    modules' metadata (``_metadata``: versions and the position grids the
    backbones record) is kept.

    Args:
        checkpoint: What :func:`load_weights_file` returned.
        path (str): File name, for error messages.

    Returns:
        dict: Parameter name -> tensor.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'{path} holds a {type(checkpoint).__name__}, not a '
                        'dict of weights')
    for key in ('state_dict', 'model', 'ema_state_dict'):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            if key == 'ema_state_dict':
                checkpoint = {
                    k: v
                    for k, v in checkpoint.items() if k != 'steps'
                }
            break

    def strip(name: str) -> str:
        return name[len('module.'):] if name.startswith('module.') else name

    state_dict = OrderedDict()
    for name, value in checkpoint.items():
        if not isinstance(value, Tensor):
            raise TypeError(f'{path}: entry {name!r} is a '
                            f'{type(value).__name__}, not a tensor')
        state_dict[strip(name)] = value
    metadata = getattr(checkpoint, '_metadata', None)
    if metadata is not None:
        state_dict._metadata = OrderedDict(
            ('' if k == 'module' else strip(k), v)
            for k, v in metadata.items())
    return state_dict


def keys_under_prefix(state_dict: StateDict, prefix: Optional[str],
                      path: str) -> StateDict:
    """The tensors whose keys start with ``prefix``, without it (all of them
    where ``prefix`` is empty).

    Raises:
        ConversionError: No key starts with ``prefix`` (``path`` named).
    """
    if not prefix:
        return state_dict
    state_dict = {
        k[len(prefix):]: v
        for k, v in state_dict.items() if k.startswith(prefix)
    }
    if not state_dict:
        raise ConversionError(f'{path} has no key starting with {prefix!r}')
    return state_dict
