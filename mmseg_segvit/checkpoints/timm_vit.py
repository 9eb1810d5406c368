"""Pretrained ViT weights (timm or mmseg layout) for mmseg's ViT backbone.

SegViT starts from the AugReg ImageNet-21k ViT-B/16 and ViT-L/16 at 384.
Users have them as

* timm checkpoints (``.safetensors`` from the Hugging Face hub, or ``.pth``)
  with timm's names (``blocks.{i}.attn.qkv``, ``patch_embed.proj``, ...),
* mmseg-converted ``.pth`` files (``layers.{i}.attn.attn.in_proj_weight``,
  ...), e.g. the ones OpenMMLab publishes for Segmenter,
* the original JAX ``.npz`` files (read with ``allow_pickle=False`` and
  converted by mmseg's packaged ``vitjax2mmseg``).

Both become a state dict of ``mmseg.models.VisionTransformer``:
timm files are read with timm's own ``load_state_dict`` (safetensors, or
``torch.load(weights_only=True)``) and renamed with the ``convert_vit``
function of mmseg's packaged ``vit2mmseg`` converter; the position
embeddings are resized to the crop grid with mmseg's
``VisionTransformer.resize_pos_embed`` (what mmseg does when it loads
``pretrained`` weights). Keys the backbone does not have are errors, except
the classifier (``head``), which ``vit2mmseg`` drops, and the final norm
(``ln1``) when the backbone has ``final_norm=False``.

:class:`ViTPretrained` is a weight initializer that does all of this at
``init_weights`` time, so a config can point straight at a timm file::

    model = dict(
        pretrained=None,
        backbone=dict(init_cfg=dict(
            type='ViTPretrained',
            checkpoint='pretrain/vit_base_patch16_384.safetensors')))
"""
import importlib.util
import os.path as osp
import re
from collections import OrderedDict
from typing import Callable, Collection, List, Mapping, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmseg.registry import WEIGHT_INITIALIZERS
from torch import Tensor

from ..grids import patch_grid
from ..typing_utils import Grid, StateDict
from .errors import ConversionError
from .pos_embed import resize_pos_embed
from .safe_load import UnsafeCheckpointError, keys_under_prefix
from .vit_keys import VIT_KEY

__all__ = [
    'vit2mmseg_converter', 'load_jax_npz', 'checkpoint_layout',
    'convert_pretrained_vit', 'load_pretrained_vit', 'ViTPretrained'
]


def _packaged_converter(script: str, name: str) -> Callable:
    """A function of one of mmseg's ``tools/model_converters`` scripts.

    The pip package ships the tools under ``mmseg/.mim/tools``; a source
    checkout has them under ``tools/`` next to the ``mmseg`` package.
    """
    import mmseg
    root = osp.dirname(mmseg.__file__)
    candidates = [
        osp.join(root, '.mim', 'tools', 'model_converters', script),
        osp.join(osp.dirname(root), 'tools', 'model_converters', script)
    ]
    for path in candidates:
        if osp.isfile(path):
            spec = importlib.util.spec_from_file_location(
                f'mmseg_{script[:-3]}', path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return getattr(module, name)
    raise ConversionError(
        f"mmseg's {script} converter was not found (looked for "
        f"{' and '.join(candidates)}); reinstall mmsegmentation")


def vit2mmseg_converter() -> Callable[[Mapping[str, Tensor]], StateDict]:
    """``convert_vit`` of mmseg's ``vit2mmseg.py`` (timm -> mmseg names)."""
    return _packaged_converter('vit2mmseg.py', 'convert_vit')


def load_jax_npz(path: str) -> StateDict:
    """An original JAX ViT ``.npz`` (e.g. AugReg) in mmseg's ViT layout.

    Read with ``numpy.load(allow_pickle=False)`` and converted by
    ``vit_jax_to_torch`` of mmseg's ``vitjax2mmseg.py`` (the depth is counted
    from the file).
    """
    import numpy as np
    import torch
    with np.load(path, allow_pickle=False) as npz:
        weights = {k: torch.from_numpy(npz[k]) for k in npz.files}
    if 'embedding/kernel' not in weights:
        raise ConversionError(
            f'{path} is not a JAX ViT checkpoint (no embedding/kernel)')
    depth = len({
        m[1]
        for m in map(
            re.compile(r'Transformer/encoderblock_(\d+)/').match, weights) if m
    })
    convert = _packaged_converter('vitjax2mmseg.py', 'vit_jax_to_torch')
    return convert(weights, depth)


def checkpoint_layout(state_dict: Mapping[str, Tensor]) -> str:
    """``'timm'`` or ``'mmseg'``: whose names a ViT state dict uses."""
    if any(k.startswith('blocks.') for k in state_dict):
        return 'timm'
    if any(k.startswith('layers.') for k in state_dict):
        return 'mmseg'
    hint = ''
    if any(k.startswith('backbone.') for k in state_dict):
        hint = (": it looks like a whole-model checkpoint, read its "
                "backbone with prefix='backbone.'")
    raise ConversionError(
        'not a ViT state dict in timm (blocks.*) or mmseg (layers.*) layout'
        '; '
        f'first keys: {", ".join(list(state_dict)[:5])}{hint}')


def convert_pretrained_vit(
    state_dict: Mapping[str, Tensor],
    grid: Optional[Grid] = None,
    final_norm: bool = False,
    interpolate_mode: str = 'bicubic',
    src_grid: Optional[Grid] = None,
    extra_keys: Collection[str] = ()
) -> Tuple[StateDict, List[str]]:
    """A timm or mmseg ViT state dict in mmseg's ViT layout.

    Args:
        state_dict (Mapping[str, Tensor]): Weights with timm's or mmseg's
            names.
        grid (tuple[int, int], optional): Patch grid (H / patch, W / patch)
            of the crop; the position embeddings are resized to it.
        final_norm (bool): Whether the backbone has a final norm (``ln1``);
            if not, the checkpoint's one is dropped.
        interpolate_mode (str): Resize mode. Default: 'bicubic'.
        src_grid (tuple[int, int], optional): Patch grid the checkpoint's
            position embeddings were trained on (24x24 for a ViT at 384
            with 16-pixel patches). Default: the released grid for their
            length (see :mod:`.pos_embed`).
        extra_keys (Collection[str]): Keys of the target outside the plain
            ViT (ShrunkViT's ``qu.*``), passed on unchanged when the state
            dict has them. Default: none.

    Returns:
        tuple: The state dict and notes on what was dropped or resized.

    Raises:
        ConversionError: A key mmseg's ViT does not have (named).
    """
    notes = []
    extra = {k: state_dict[k] for k in extra_keys if k in state_dict}
    state_dict = {k: v for k, v in state_dict.items() if k not in extra}
    if checkpoint_layout(state_dict) == 'timm':
        head = [k for k in state_dict if k.startswith('head')]
        state_dict = vit2mmseg_converter()(state_dict)
        if head:
            notes.append(f'dropped the classifier ({", ".join(head)})')
    out = dict(state_dict)
    if not final_norm and any(k.startswith('ln1.') for k in out):
        for key in [k for k in out if k.startswith('ln1.')]:
            del out[key]
        notes.append('dropped the final norm (ln1): the backbone has '
                     'final_norm=False')
    pattern = re.compile(VIT_KEY)
    unknown = [k for k in out if not pattern.fullmatch(k)]
    if unknown:
        raise ConversionError(
            f'{len(unknown)} key(s) have no place in mmseg\'s '
            f'VisionTransformer: {", ".join(sorted(unknown)[:8])}')
    if grid is not None and 'pos_embed' in out:
        old = out['pos_embed']
        if old.shape[1] != grid[0] * grid[1] + 1:
            out['pos_embed'] = resize_pos_embed(old, grid, src_grid,
                                                interpolate_mode)
            notes.append(f'resized pos_embed from {tuple(old.shape)} to '
                         f'{tuple(out["pos_embed"].shape)}')
    out.update(extra)
    return out, notes


def load_pretrained_vit(
    path: str,
    grid: Optional[Grid] = None,
    final_norm: bool = False,
    interpolate_mode: str = 'bicubic',
    src_grid: Optional[Grid] = None,
    prefix: Optional[str] = None,
    extra_keys: Collection[str] = ()
) -> Tuple[StateDict, List[str]]:
    """Read a timm or mmseg ViT file and convert it (see
    :func:`convert_pretrained_vit`).

    Files are read with timm's ``load_state_dict``: safetensors, or
    ``torch.load(weights_only=True)`` for pickles (EMA weights preferred,
    ``state_dict``/``model`` nesting and ``module.`` prefixes handled);
    original JAX ``.npz`` files with :func:`load_jax_npz`.

    Args:
        prefix (str, optional): Take only the keys that start with it,
            without it: ``'backbone.'`` reads the ViT of a whole segmentor
            checkpoint (e.g. one ``mim train`` wrote). Default: all keys.

    Raises:
        UnsafeCheckpointError: The pickle would need code to load.
        ConversionError: No key starts with ``prefix``.
    """
    from timm.models import load_state_dict
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if path.endswith('.npz'):
        return convert_pretrained_vit(
            load_jax_npz(path), grid, final_norm, interpolate_mode, src_grid,
            extra_keys)
    try:
        state_dict = load_state_dict(path, weights_only=True)
    except RuntimeError as err:
        if 'weights_only' not in str(err):
            raise
        raise UnsafeCheckpointError(
            f'refused to load {path}: its pickle needs objects that '
            'weights_only=True loading does not allow (a checkpoint like '
            'this can run code when unpickled). Only load files from '
            f'sources you trust. {err}') from None
    state_dict = keys_under_prefix(state_dict, prefix, path)
    return convert_pretrained_vit(state_dict, grid, final_norm,
                                  interpolate_mode, src_grid, extra_keys)


def recorded_grids(path: str, prefix: Optional[str] = None) -> dict:
    """The position grids a checkpoint recorded for the module under
    ``prefix`` (``{'pos_embed': (h, w), ...}``; see
    :data:`~mmseg_segvit.checkpoints.pos_embed.GRIDS_KEY`), or ``{}``.

    Reads only the pickle's structure (``torch.load(mmap=True,
    weights_only=True)``); safetensors and ``.npz`` files record none.
    """
    import torch

    from .pos_embed import GRIDS_KEY
    if path.endswith(('.npz', '.safetensors')):
        return {}
    try:
        checkpoint = torch.load(
            path, map_location='cpu', mmap=True, weights_only=True)
    except Exception:  # an older format: read by the main loader
        return {}
    if isinstance(checkpoint, dict):
        for key in ('state_dict', 'model'):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    metadata = getattr(checkpoint, '_metadata', None) or {}
    name = (prefix or '')[:-1] if prefix else ''
    local = metadata.get(name) or metadata.get(f'module.{name}'.rstrip('.'))
    return dict((local or {}).get(GRIDS_KEY) or {})


@WEIGHT_INITIALIZERS.register_module()
class ViTPretrained:
    """Initialise mmseg's ``VisionTransformer`` from a timm or mmseg file.

    Position embeddings are resized to the backbone's ``img_size`` from
    the grid they were trained on (``src_grid``, else the grid the file
    recorded, else the released grid for their length). Every ViT weight
    of the backbone (patch embedding, position embedding, layers) must
    come from the file. Parameters a subclass adds outside the plain ViT
    (:class:`ShrunkViT`'s query up-sampling ``qu.*``) come from the file
    when it has them (all of them; its position tables resized like
    ``pos_embed``), else keep their own initialisation, which the log
    says.

    Args:
        checkpoint (str): ``.safetensors``, ``.pth`` or ``.npz`` file.
        src_grid (tuple[int, int], optional): Patch grid the file's
            position embeddings were trained on. Default: the released
            grid for their length (24x24 for the AugReg ViTs at 384).
        prefix (str, optional): Read only the keys under this prefix
            (``'backbone.'`` takes the ViT of a whole segmentor
            checkpoint). Default: all keys.
    """

    def __init__(self,
                 checkpoint: str,
                 src_grid: Optional[Grid] = None,
                 prefix: Optional[str] = None) -> None:
        self.checkpoint = checkpoint
        self.src_grid = None if src_grid is None else tuple(src_grid)
        self.prefix = prefix

    def __call__(self, module: nn.Module) -> None:
        if not hasattr(module, 'pos_embed') or not hasattr(
                module, 'patch_size'):
            raise TypeError('ViTPretrained initialises mmseg '
                            f'VisionTransformer, not {type(module).__name__}')
        from .pos_embed import GRIDS_KEY
        vit_key = re.compile(VIT_KEY)
        own = module.state_dict()
        extra = sorted(k for k in own if not vit_key.fullmatch(k))
        recorded = {} if self.src_grid else recorded_grids(
            self.checkpoint, self.prefix)
        src_grid = self.src_grid or recorded.get('pos_embed')
        state_dict, notes = load_pretrained_vit(
            self.checkpoint, patch_grid(module.img_size, module.patch_size),
            getattr(module, 'final_norm', False),
            getattr(module, 'interpolate_mode', 'bicubic'), src_grid,
            self.prefix, extra)
        in_file = [k for k in extra if k in state_dict]
        missing_extra = [k for k in extra if k not in state_dict]
        if in_file and missing_extra:
            raise ConversionError(
                f'{self.checkpoint} has {len(in_file)} of the '
                f'{len(extra)} {type(module).__name__} weights outside '
                f'the plain ViT; missing {", ".join(missing_extra[:8])}')
        # other tables (QU's queries) are resized by the module's load
        # hook, from the grid given or recorded
        grids = {k: g for k, g in recorded.items() if k != 'pos_embed'}
        if self.src_grid:
            grids = {k: self.src_grid for k in extra}
        state_dict = OrderedDict(state_dict)
        state_dict._metadata = {'': {GRIDS_KEY: grids}}
        missing, unexpected = module.load_state_dict(state_dict, strict=False)
        missing = [k for k in missing if k not in missing_extra]
        if missing or unexpected:
            raise ConversionError(
                f'{self.checkpoint} does not fit '
                f'{type(module).__name__}: missing '
                f'{", ".join(missing[:8]) or "nothing"}; unexpected '
                f'{", ".join(unexpected[:8]) or "nothing"}')
        if missing_extra:
            parts = sorted({k.split('.')[0] for k in extra})
            notes.append(f'{len(extra)} tensors outside the plain ViT keep '
                         f'their initialisation ({", ".join(parts)})')
        src = self.checkpoint + (f' (keys under {self.prefix!r})'
                                 if self.prefix else '')
        for note in [f'loaded {src}'] + notes:
            print_log(f'ViTPretrained: {note}', logger='current')
