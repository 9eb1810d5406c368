"""Convert the released SegViT checkpoints to this package's layout.

The official models (github zbwxp/SegVit) were trained with MMSegmentation
0.24. Their checkpoints hold ``state_dict`` with

* ``backbone.*``: mmseg's ``VisionTransformer``, whose parameter names
  mmseg 0.24 and 1.x share (:data:`.vit_keys.VIT_KEY`), so they keep them.
* ``decode_head.*``: the official ``ATMHead``, whose modules are attributes
  numbered from 1 (``input_proj_{n}``, ``proj_norm_{n}``, ``decoder_{n}``)
  where this package uses lists numbered from 0 (``input_projs.{n-1}``,
  ``proj_norms.{n-1}``, ``decoders.{n-1}``). Both count from the deepest
  stage. The decoder layers are torch ``TransformerDecoderLayer`` s with a
  custom cross-attention (``multihead_attn.{q,k,v,proj}``); ours use the same
  parameter names, so the part after ``layers.{j}.`` is kept. ``q`` and
  ``class_embed`` keep their names.
* ``decode_head.loss_decode.criterion.empty_weight``: a constant buffer of
  the official loss (ones, 0.1 for "no object"), not a weight. Dropped.

The Shrunk models (``vit_shrink`` backbone + ``TPNATMHead``) keep the ViT
names too (the shrink layer is a plain ViT layer with another forward).
Their head has two parts: query up-sampling (QU: ``q``, ``input_proj_{n}``,
``proj_norm_{n}``, ``decoder_{n}`` of torch's standard decoder layers,
numbered from the high-resolution level), which this package keeps in the
backbone (``backbone.qu.q``, ``backbone.qu.input_projs.{n-1}``, ...), and an
ATM head without projections under ``decode_head.atm.`` (``decoder_1``,
``q``, ``class_embed``), which becomes ``decode_head.decoders.0``,
``decode_head.q`` and ``decode_head.class_embed``.

Every key must match one rule, and the result must fill the target model
exactly (names and shapes), otherwise :class:`ConversionError` names what
is wrong.
"""
import re
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import torch.nn as nn
from torch import Tensor

from ..grids import patch_grid
from ..typing_utils import StateDict
from .errors import ConversionError
from .pos_embed import resize_pos_embed
from .vit_keys import VIT_KEY

__all__ = [
    'ConversionError', 'ViTInfo', 'rename_official_keys', 'describe_official',
    'describe_model', 'convert_official_state_dict', 'is_shrunk_official',
    'ATM_RULES', 'SHRUNK_RULES', 'DROPPED_KEYS'
]

Rule = Tuple[str, Callable[[re.Match], str]]

_VIT = r'backbone\.' + VIT_KEY
# Parameter names inside one ATM decoder layer (official and ours alike).
_ATM_LAYER = (r'self_attn\.(?:in_proj_weight|in_proj_bias|out_proj\.weight'
              r'|out_proj\.bias)'
              r'|multihead_attn\.(?:q|k|v|proj)\.(?:weight|bias)'
              r'|(?:linear1|linear2|norm1|norm2|norm3)\.(?:weight|bias)')
# Parameter names inside one torch TransformerDecoderLayer.
_TORCH_LAYER = (r'(?:self_attn|multihead_attn)\.(?:in_proj_weight'
                r'|in_proj_bias|out_proj\.weight|out_proj\.bias)'
                r'|(?:linear1|linear2|norm1|norm2|norm3)\.(?:weight|bias)')
_WB = r'(weight|bias)'


def _same(m: re.Match) -> str:
    return m[0]


def _to(name: str) -> Callable[[re.Match], str]:
    """Template: a fixed new name, ``{}`` filled with the first group."""
    return lambda m: name.format(*m.groups())


def _minus_one(prefix: str, field: int = 1) -> Callable[[re.Match], str]:
    """Template that renumbers ``m[field]`` from 1-based to 0-based."""

    def rename(m: re.Match) -> str:
        rest = m.string[m.end(field):]
        return f'{prefix}{int(m[field]) - 1}{rest}'

    return rename


#: Rules of the plain ATM models: (full-match regex, new name).
ATM_RULES: List[Rule] = [
    (_VIT, _same),
    (r'decode_head\.input_proj_(\d+)\.' + _WB,
     _minus_one('decode_head.input_projs.')),
    (r'decode_head\.proj_norm_(\d+)\.' + _WB,
     _minus_one('decode_head.proj_norms.')),
    (r'decode_head\.decoder_(\d+)\.layers\.\d+\.(?:' + _ATM_LAYER + ')',
     _minus_one('decode_head.decoders.')),
    (r'decode_head\.q\.weight', _same),
    (r'decode_head\.class_embed\.' + _WB, _same),
]

#: Rules of the Shrunk models (vit_shrink + TPNATMHead).
SHRUNK_RULES: List[Rule] = [
    (_VIT, _same),
    (r'decode_head\.q\.weight', _to('backbone.qu.q.weight')),
    (r'decode_head\.input_proj_(\d+)\.' + _WB,
     _minus_one('backbone.qu.input_projs.')),
    (r'decode_head\.proj_norm_(\d+)\.' + _WB,
     _minus_one('backbone.qu.proj_norms.')),
    (r'decode_head\.decoder_(\d+)\.layers\.\d+\.(?:' + _TORCH_LAYER + ')',
     _minus_one('backbone.qu.decoders.')),
    (r'decode_head\.atm\.decoder_(\d+)\.layers\.\d+\.(?:' + _ATM_LAYER + ')',
     _minus_one('decode_head.decoders.')),
    (r'decode_head\.atm\.q\.weight', _to('decode_head.q.weight')),
    (r'decode_head\.atm\.class_embed\.' + _WB,
     _to('decode_head.class_embed.{}')),
]

#: Keys that hold no weights of the model (the official loss's buffer).
DROPPED_KEYS = (r'decode_head\.(?:atm\.)?loss_decode\.criterion'
                r'\.empty_weight', )


def _short(names: Sequence[str], limit: int = 8) -> str:
    names = sorted(names)
    more = len(names) - limit
    return ', '.join(
        names[:limit]) + (f' (and {more} more)' if more > 0 else '')


def rename_official_keys(
        state_dict: Mapping[str, Tensor],
        rules: Sequence[Rule] = ATM_RULES) -> Tuple[StateDict, List[str]]:
    """Rename the keys of an official state dict by rule.

    Args:
        state_dict (Mapping[str, Tensor]): Official ``state_dict``.
        rules (Sequence[Rule]): (regex, rename) pairs; the first full match
            wins.

    Returns:
        tuple: The renamed state dict and the list of dropped keys.

    Raises:
        ConversionError: A key matches no rule (named in the message).
    """
    compiled = [(re.compile(p), f) for p, f in rules]
    dropped_patterns = [re.compile(p) for p in DROPPED_KEYS]
    renamed, dropped, unknown = {}, [], []
    for key, value in state_dict.items():
        if any(p.fullmatch(key) for p in dropped_patterns):
            dropped.append(key)
            continue
        for pattern, rename in compiled:
            m = pattern.fullmatch(key)
            if m:
                renamed[rename(m)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(
            f'{len(unknown)} key(s) of the checkpoint match no conversion '
            f'rule: {_short(unknown)}. Is it an official SegViT checkpoint '
            '(ViT + ATMHead, or vit_shrink + TPNATMHead)?')
    return renamed, dropped


class ViTInfo(dict):
    """What a state dict says about the model: backbone depth and width, patch
    size, position grid tokens and class count."""

    @property
    def name(self) -> str:
        known = {(12, 768): 'ViT-B', (24, 1024): 'ViT-L', (12, 384): 'ViT-S'}
        base = known.get((self['num_layers'], self['embed_dims']), 'ViT')
        kind = 'Shrunk ' if self['shrunk'] else ''
        return (f"{kind}{base}/{self['patch_size']} ({self['num_layers']} "
                f"layers of {self['embed_dims']} channels)")


def is_shrunk_official(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether an official state dict is a Shrunk model (TPNATMHead)."""
    return any(k.startswith('decode_head.atm.') for k in state_dict)


def _describe(state_dict: Mapping[str, Tensor], q_key: str,
              shrunk: bool) -> ViTInfo:
    proj = state_dict.get('backbone.patch_embed.projection.weight')
    layers = {
        int(m[1])
        for m in map(
            re.compile(r'backbone\.layers\.(\d+)\.').match, state_dict) if m
    }
    pos = state_dict.get('backbone.pos_embed')
    q = state_dict.get(q_key)
    return ViTInfo(
        embed_dims=None if proj is None else proj.shape[0],
        patch_size=None if proj is None else proj.shape[-1],
        num_layers=len(layers),
        pos_tokens=None if pos is None else pos.shape[1],
        num_classes=None if q is None else q.shape[0],
        shrunk=shrunk)


def describe_official(state_dict: Mapping[str, Tensor]) -> ViTInfo:
    """Backbone and class count of an official state dict."""
    shrunk = is_shrunk_official(state_dict)
    q_key = 'decode_head.atm.q.weight' if shrunk else 'decode_head.q.weight'
    return _describe(state_dict, q_key, shrunk)


def describe_model(state_dict: Mapping[str, Tensor]) -> ViTInfo:
    """Backbone and class count of a state dict in this package's layout."""
    return _describe(state_dict, 'decode_head.q.weight', 'backbone.qu.q.weight'
                     in state_dict)


def _check_architecture(src: ViTInfo,
                        dst: ViTInfo,
                        path: str,
                        check_classes: bool = True) -> None:
    """Raise a readable error for the mismatches users run into."""
    if src['shrunk'] != dst['shrunk']:
        kinds = {
            True: 'a Shrunk model (vit_shrink + TPNATMHead)',
            False: 'a plain ATM model (ViT + ATMHead)'
        }
        raise ConversionError(
            f"{path} is {kinds[src['shrunk']]} but the config builds "
            f"{kinds[dst['shrunk']]}: use a "
            f"{'-shrunk' if src['shrunk'] else 'plain'} config.")
    if (src['embed_dims'], src['num_layers'], src['patch_size']) != (
            dst['embed_dims'], dst['num_layers'], dst['patch_size']):
        raise ConversionError(
            f'{path} holds a {src.name} backbone but the config builds a '
            f'{dst.name}: convert it with a config of the same backbone '
            '(see the table in the README).')
    if check_classes and src['num_classes'] != dst['num_classes']:
        raise ConversionError(
            f"{path} was trained for {src['num_classes']} classes "
            f"(decode_head.q.weight has {src['num_classes']} rows) but the "
            f"config's head has {dst['num_classes']}: convert it with the "
            'config of the dataset it was trained on. To fine-tune it on a '
            'dataset with another class count, convert it with '
            '--backbone-only and set model.pretrained of your config to the '
            'output; the head then starts from scratch.')


def _resize_pos_embed(pos_embed: Tensor, target: Tensor,
                      backbone: Optional[nn.Module],
                      src_grid: Optional[Sequence[int]]) -> Tensor:
    """Resize (1, 1 + h*w, C) position embeddings to the backbone's grid."""
    if backbone is None or not hasattr(backbone, 'img_size'):
        raise ConversionError(
            f'backbone.pos_embed has {pos_embed.shape[1]} tokens, the model '
            f'{target.shape[1]}; a ViT backbone is needed to resize them')
    new = patch_grid(backbone.img_size, backbone.patch_size)
    if new[0] * new[1] + 1 != target.shape[1]:
        raise ConversionError(
            f'the model\'s backbone.pos_embed {tuple(target.shape)} does not '
            f'match its {new[0]}x{new[1]} patch grid')
    return resize_pos_embed(pos_embed, new, src_grid,
                            backbone.interpolate_mode, 'backbone.pos_embed')


def convert_official_state_dict(
        state_dict: Mapping[str, Tensor],
        model: nn.Module,
        path: str = 'the checkpoint',
        backbone_only: bool = False,
        src_grid: Optional[Sequence[int]] = None
) -> Tuple[StateDict, List[str]]:
    """Convert an official state dict for ``model`` and check it fits.

    Args:
        state_dict (Mapping[str, Tensor]): The official ``state_dict``.
        model (nn.Module): The target ``EncoderDecoder`` built from the
            matching config (its parameters may live on the meta device).
        path (str): Checkpoint name for messages.
        backbone_only (bool): Keep only the backbone, with its keys
            relative to the backbone (the layout ``model.pretrained``
            loads), and check it against ``model.backbone``.
        src_grid (Sequence[int], optional): Patch grid (h, w) the
            checkpoint's position embeddings were trained on, needed when
            they are resized to the config's crop. Default: the released
            grid for their length (see :mod:`.pos_embed`).

    Returns:
        tuple: The converted state dict, which ``model.load_state_dict(...,
        strict=True)`` accepts (or ``model.backbone`` with
        ``backbone_only``), and notes about what was dropped or resized.

    Raises:
        ConversionError: Unknown, missing or left-over keys, or shapes that
            differ; the message names them.
    """
    rules = SHRUNK_RULES if is_shrunk_official(state_dict) else ATM_RULES
    renamed, dropped = rename_official_keys(state_dict, rules)
    target = model.state_dict()
    notes = [f'dropped {k} (a constant of the official loss)' for k in dropped]
    _check_architecture(
        describe_official(state_dict),
        describe_model(target),
        path,
        check_classes=not backbone_only)
    if backbone_only:
        renamed = {
            k: v
            for k, v in renamed.items() if k.startswith('backbone.')
        }
        if 'backbone.qu.q.weight' in renamed:
            notes.append('backbone.qu.* (query up-sampling) is written too, '
                         'but ShrunkViT re-initialises it after loading '
                         '`pretrained`: only the ViT part carries over')
        target = {k: v for k, v in target.items() if k.startswith('backbone.')}
    missing = [k for k in target if k not in renamed]
    extra = [k for k in renamed if k not in target]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f'the model has {len(missing)} parameter(s) the '
                         f'checkpoint lacks: {_short(missing)}')
        if extra:
            parts.append(f'the checkpoint has {len(extra)} parameter(s) the '
                         f'model lacks: {_short(extra)}')
        hint = ''
        if 'backbone.ln1.weight' in extra:
            hint = (' (backbone.ln1 is a final norm: set '
                    'model.backbone.final_norm=True)')
        if 'backbone.patch_embed.projection.bias' in extra:
            hint = ' (set model.backbone.patch_bias=True)'
        raise ConversionError(f'{path} does not fit the config: ' +
                              '; '.join(parts) + hint)
    backbone = getattr(model, 'backbone', None)
    wrong = []
    for key, value in renamed.items():
        want = target[key]
        if value.shape == want.shape:
            continue
        if key == 'backbone.pos_embed' and value.shape[2] == want.shape[2]:
            renamed[key] = _resize_pos_embed(value, want, backbone, src_grid)
            notes.append(f'resized {key} from {tuple(value.shape)} to '
                         f'{tuple(want.shape)}')
            continue
        wrong.append(f'{key}: checkpoint {tuple(value.shape)}, model '
                     f'{tuple(want.shape)}')
    if wrong:
        raise ConversionError(f'{path}: {len(wrong)} shape(s) differ from '
                              'the config: ' + _short(wrong))
    out = {k: v.contiguous() for k, v in renamed.items()}
    if backbone_only:
        out = {k[len('backbone.'):]: v for k, v in out.items()}
    return out, notes
