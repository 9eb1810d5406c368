"""Pretrained weights for :class:`~mmseg_segvit.models.backbones.TimmViT`.

Reads the files users have, from a local path (nothing is downloaded):

* the official release files: DINOv2 hub ``dinov2_vit{s,b,l,g}14[_reg4]_
  pretrain.pth``, DINOv3 ``dinov3_vit*16_pretrain_*.pth``, BEiT-v2 and
  EVA-02 release files (nested under ``model`` / ``module`` /
  ``state_dict`` or flat);
* timm's own files (``.safetensors`` or ``.pth``);
* the backbone of a segmentor checkpoint (``prefix='backbone.vit.'``).

Pickles are read with ``torch.load(weights_only=True)``, safetensors with
the ``safetensors`` package (:func:`.safe_load.load_weights_file`). The
keys are converted by the ``checkpoint_filter_fn`` of the timm module that
builds the model (``timm.models.vision_transformer``, ``eva``, ``beit``:
DINOv2's ``register_tokens`` and SwiGLU ``w12``/``w3``, DINOv3's
``storage_tokens``, ``ls{1,2}.gamma`` and split ``qkv.bias``, BEiT-v2's and
EVA-02's layouts), not by a key map of this package. Two things timm's
filter does not do the official way are done here first:

* the learned position table is resized to the backbone's grid by the rule
  of the official code (:func:`~mmseg_segvit.pos_table_rule`;
  timm resizes DINOv2 tables with another kernel and sampling positions);
* DINOv3's RoPE periods are taken from the file (timm discards them and
  recomputes them in float32; the official model loads the file's, which
  timm notes are rounded to bfloat16).

Then the load is strict: a tensor the backbone needs that the file lacks,
a tensor of the file that has no place in the backbone, or one of another
shape, is a :class:`ConversionError` that names them. Only tensors the
backbone drops by design are left out, and logged: the classifier, the
final norm, pretraining-only tokens (``mask_token``) and the blocks after
the last ``out_indices`` entry.
"""
import re
import sys
from typing import List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmseg.registry import WEIGHT_INITIALIZERS
from torch import Tensor, nn

from ..pos_table import resize_pos_table
from ..typing_utils import Grid, StateDict
from .errors import ConversionError
from .safe_load import get_state_dict, keys_under_prefix, load_weights_file

__all__ = [
    'read_backbone_file', 'convert_timm_backbone', 'load_timm_backbone',
    'TimmPretrained'
]

# modules and tensors of pretraining files that a TimmViT leaves out by
# design (classifier, final norms, pretraining-only tokens)
_DROPPED = ('head', 'head_drop', 'fc_norm', 'norm', 'lm_head', 'attn_pool',
            'cls_norm', 'local_cls_norm', 'mask_token')


def read_backbone_file(path: str, prefix: Optional[str] = None) -> StateDict:
    """The tensors of a weights file, unnested, optionally under a prefix.

    Args:
        path (str): Local ``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors``.
        prefix (str, optional): Keep only keys starting with it, without it.

    Raises:
        FileNotFoundError, UnsafeCheckpointError: See
            :func:`.safe_load.load_weights_file`.
        ConversionError: No key starts with ``prefix``.
    """
    checkpoint = load_weights_file(path)
    while (isinstance(checkpoint, Mapping) and 'module' in checkpoint
           and isinstance(checkpoint['module'], Mapping)):
        checkpoint = checkpoint['module']  # EVA (deepspeed) files
    return keys_under_prefix(get_state_dict(checkpoint, path), prefix, path)


def _source_grid(tokens: int, num_prefix: int, candidates: List[Grid],
                 src_grid: Optional[Sequence[int]], path: str) -> Grid:
    """The grid of a stored table of ``tokens`` entries."""
    if src_grid is not None:
        grid = (int(src_grid[0]), int(src_grid[1]))
        if tokens - grid[0] * grid[1] not in range(num_prefix + 1):
            raise ConversionError(
                f'{path}: pos_embed has {tokens} entries, which src_grid='
                f'{grid} (plus up to {num_prefix} class/register entries) '
                'does not hold')
        return grid
    for grid in candidates:
        if tokens - grid[0] * grid[1] in range(num_prefix + 1):
            return grid
    raise ConversionError(
        f'{path}: pos_embed has {tokens} entries, which fit neither the '
        f'backbone grid nor the pretraining grid ({candidates}): give the '
        "grid it was trained on as init_cfg=dict(type='Pretrained', "
        "checkpoint=..., src_grid=(H, W))")


def convert_timm_backbone(
        state_dict: Mapping[str, Tensor],
        backbone: nn.Module,
        src_grid: Optional[Sequence[int]] = None,
        path: str = '<checkpoint>') -> Tuple[StateDict, List[str]]:
    """A release or timm state dict in the layout of ``backbone.vit``.

    Args:
        state_dict (Mapping[str, Tensor]): The file's tensors.
        backbone (TimmViT): The backbone to load (its ``vit``, grid,
            ``model_name``, ``pos_rule`` are read).
        src_grid (Sequence[int], optional): Grid of the file's position
            table. Default: the backbone's grid if the table fits it, else
            timm's pretraining grid of the model.
        path (str): For messages.

    Returns:
        tuple: The converted state dict (exactly ``backbone.vit``'s keys
        and shapes) and notes on what was resized or left out.

    Raises:
        ConversionError: Missing, extra or misshaped tensors (named).
    """
    vit = backbone.vit
    notes: List[str] = []
    raw = dict(state_dict)
    if raw and all(k.startswith('vit.') for k in raw):
        # TimmViT's own layout: a saved TimmViT, or a segmentor checkpoint
        # read with mmengine's usual prefix='backbone.'
        raw = {k[len('vit.'):]: v for k, v in raw.items()}
    else:
        _check_whole_model(raw, path)
    periods = raw.get('rope_embed.periods')
    _check_dinov3_qkv_bias(raw, vit, backbone.model_name, path)
    _check_register_tokens(raw, vit, backbone.model_name, path)

    table = raw.get('pos_embed')
    resized = None
    if table is not None and getattr(vit, 'pos_embed', None) is not None:
        pretrain = tuple(
            vit.pretrained_cfg.get('input_size',
                                   (3, ) + backbone.img_size)[-2:])
        candidates = [
            backbone.grid,
            (pretrain[0] // backbone.patch_size,
             pretrain[1] // backbone.patch_size)
        ]
        grid = _source_grid(table.shape[1], vit.num_prefix_tokens, candidates,
                            src_grid, path)
        num_prefix = table.shape[1] - grid[0] * grid[1]
        raw['pos_embed'] = resize_pos_table(table, grid, backbone.grid,
                                            num_prefix, backbone.pos_rule)
        resized = raw['pos_embed'][:, num_prefix:]
        if grid != backbone.grid:
            notes.append(f'resized pos_embed from the {grid[0]}x{grid[1]} '
                         f'to the {backbone.grid[0]}x{backbone.grid[1]} '
                         f'grid ({backbone.pos_rule})')

    module = sys.modules[type(vit).__module__]
    filter_fn = getattr(module, 'checkpoint_filter_fn', None)
    try:
        out = dict(filter_fn(raw, vit)) if filter_fn is not None else raw
    except (RuntimeError, ValueError, KeyError, AttributeError, TypeError,
            IndexError) as err:
        # another family's file: timm's filters index tensors they expect
        raise ConversionError(
            f'{path} does not fit TimmViT({backbone.model_name}): timm\'s '
            f'{module.__name__}.checkpoint_filter_fn failed ({err}). Check '
            'model_name and model_kwargs against the file') from err
    if resized is not None and 'pos_embed' in out:
        # the table was resized above: keep it whatever the filter did
        out['pos_embed'] = torch.cat(
            (out['pos_embed'][:, :-resized.shape[1]], resized), dim=1)

    expected = vit.state_dict()
    rope = getattr(vit, 'rope', None)
    if periods is not None and rope is not None and hasattr(rope, 'periods'):
        out['rope.periods'] = periods.to(rope.periods.dtype)
        notes.append('took the RoPE periods from the file')
    elif 'rope.periods' in expected and 'rope.periods' not in out:
        out['rope.periods'] = expected['rope.periods']
        notes.append('the file has no RoPE periods: kept the official '
                     "schedule's, rounded to bfloat16 as in DINOv3's files")

    kept = len(vit.blocks)
    dropped = []
    for key in list(out):
        if key in expected:
            continue
        block = re.match(r'blocks\.(\d+)\.', key)
        if (block and int(block[1]) >= kept) or (
                not block and key.split('.')[0] in _DROPPED):
            dropped.append(key)
            del out[key]
    if dropped:
        parts = sorted({
            '.'.join(k.split('.')[:2 if k.startswith('blocks.') else 1])
            for k in dropped
        })
        notes.append(f'left out {len(dropped)} tensors the backbone does not '
                     f'use ({", ".join(parts[:12])}'
                     f'{", ..." if len(parts) > 12 else ""})')

    missing = sorted(set(expected) - set(out))
    unexpected = sorted(set(out) - set(expected))
    misshaped = [
        f'{k} {tuple(out[k].shape)} (backbone '
        f'{tuple(expected[k].shape)})'
        for k in sorted(set(out) & set(expected))
        if out[k].shape != expected[k].shape
    ]
    if missing or unexpected or misshaped:
        what = []
        if missing:
            what.append(f'lacks {len(missing)} tensor(s) of the backbone: '
                        f'{", ".join(missing[:8])}')
        if unexpected:
            what.append(f'has {len(unexpected)} tensor(s) with no place in '
                        f'it: {", ".join(unexpected[:8])}')
        if misshaped:
            what.append(f'has {len(misshaped)} of other shapes: '
                        f'{"; ".join(misshaped[:8])}')
        raise ConversionError(
            f'{path} does not fit TimmViT({backbone.model_name}, '
            f'{dict(vit.pretrained_cfg).get("architecture", "")}): it ' +
            '; it '.join(what) + '. Check model_name and model_kwargs '
            'against the file (size, registers, qkv bias)')
    return out, notes


def _check_whole_model(raw: Mapping[str, Tensor], path: str) -> None:
    """Refuse a segmentor checkpoint read without a prefix, naming the prefix
    that takes its backbone."""
    if any(k.startswith('backbone.vit.') for k in raw):
        raise ConversionError(
            f"{path} is a whole-model checkpoint (keys under 'backbone.vit.'"
            "): take its backbone with init_cfg=dict(type='Pretrained', "
            "checkpoint=..., prefix='backbone.'), or load the whole model "
            'with load_from')


def _check_register_tokens(raw: Mapping[str, Tensor], vit: nn.Module,
                           model_name: str, path: str) -> None:
    """Refuse a file whose register / storage tokens the model lacks (or the
    other way round), naming both counts."""
    stored = next((raw[k]
                   for k in ('register_tokens', 'storage_tokens', 'reg_token')
                   if k in raw), None)
    have = 0 if stored is None else stored.shape[1]
    reg = getattr(vit, 'reg_token', None)
    want = 0 if reg is None else reg.shape[1]
    if have != want:
        raise ConversionError(
            f'{path} has {have} register tokens (reg_token / '
            f'register_tokens / storage_tokens) but {model_name} has '
            f'{want}: use the model of the file (e.g. *_reg4_dinov2 for '
            'DINOv2 files with registers)')


def _check_dinov3_qkv_bias(raw: Mapping[str, Tensor], vit: nn.Module,
                           model_name: str, path: str) -> None:
    """Refuse DINOv3 qkv biases a bias-free timm model would drop.

    timm's filter skips ``qkv.bias`` when the model has no ``q_bias`` (its
    ``vit_*_dinov3`` models without ``_qkvb`` assume the released biases are
    zero); a file with non-zero biases then loses them.
    """
    if 'storage_tokens' not in raw:
        return
    biases = [k for k in raw if k.endswith('attn.qkv.bias')]
    if not biases:
        return
    try:
        vit.get_parameter(biases[0].replace('qkv.bias', 'q_bias'))
        return
    except AttributeError:
        pass
    # the k third is masked to zero by the official model (bias_mask)
    nonzero = []
    for k in biases:
        q, _, v = raw[k].chunk(3)
        if q.any() or v.any():
            nonzero.append(k)
    if nonzero:
        raise ConversionError(
            f'{path} has non-zero attention biases ({", ".join(nonzero[:3])}'
            f'...) but {model_name} has none: use the timm model with '
            f'biases ({model_name.split(".")[0]}_qkvb)')


def load_timm_backbone(backbone: nn.Module,
                       path: str,
                       prefix: Optional[str] = None,
                       src_grid: Optional[Sequence[int]] = None) -> List[str]:
    """Load a local weights file into a :class:`TimmViT` (strict).

    Args:
        backbone (TimmViT): The backbone.
        path (str): The file.
        prefix (str, optional): Read only the keys under it
            (``'backbone.'`` or ``'backbone.vit.'`` for a segmentor
            checkpoint of this package: keys of TimmViT's own layout,
            ``vit.*``, are taken as ``backbone.vit``'s).
        src_grid (Sequence[int], optional): Grid of the file's position
            table, if neither the backbone's nor timm's pretraining grid.

    Returns:
        list[str]: What was resized or left out (also logged).
    """
    state_dict, notes = convert_timm_backbone(
        read_backbone_file(path, prefix), backbone, src_grid, path)
    backbone.vit.load_state_dict(state_dict, strict=True)
    src = path + (f' (keys under {prefix!r})' if prefix else '')
    for note in [f'loaded {src} into {backbone.model_name}'] + notes:
        print_log(f'TimmViT: {note}', logger='current')
    return notes


@WEIGHT_INITIALIZERS.register_module()
class TimmPretrained:
    """Weight initializer: :func:`load_timm_backbone` into a TimmViT.

    ``TimmViT(init_cfg=dict(type='Pretrained', checkpoint=...))`` does the
    same; this type serves ``init_cfg`` lists and other holders.

    Args:
        checkpoint (str): Local weights file.
        prefix (str, optional): Read only keys under this prefix.
        src_grid (tuple[int, int], optional): Grid of the file's table.
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: Optional[str] = None,
                 src_grid: Optional[Sequence[int]] = None) -> None:
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.src_grid = src_grid

    def __call__(self, module: nn.Module) -> None:
        if not hasattr(module, 'vit') or not hasattr(module, 'pos_rule'):
            raise TypeError('TimmPretrained initialises a TimmViT, not '
                            f'{type(module).__name__}')
        load_timm_backbone(module, self.checkpoint, self.prefix, self.src_grid)
